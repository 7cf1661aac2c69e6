//! The WebGPU executor (wgpu: Vulkan natively, the one native backend the crate enables; WebGPU in the browser).
//! Kernels live in `shaders/`, one operation per file and one entry point per kernel; the table in `kernels`' docs
//! pairs each with its CPU twin and parity test. The program reads like the CPU executor's: `activations` (what a
//! forward pass writes), `forward` (recorded once, shared by [`GpuTrainer`] and [`GpuGenerator`]), `head` (the tied
//! head, fused with the loss in chunks of rows), `backward`, and `train` (the optimizer and the step); `weights` lays
//! the parameters out in shards no larger than one binding, the embedding in parts. Every prepared dispatch carries its
//! `cost` on paper (FLOPs and bytes, for `qlora bench --backend gpu --profile`).
//!
//! Everything is async: device creation and readbacks (`map_async`, awaited through a channel). Natively the CLI and
//! the tests drive the futures with `pollster` and poll the device; in the browser nothing ever blocks.

mod activations;
mod alloc;
mod backward;
mod cost;
mod forward;
mod generate;
mod head;
mod kernels;
mod matmul;
mod train;
mod weights;

pub use alloc::{Category, GpuBuffer, MemoryLedger, View};
pub use cost::{by_kernel, Cost, KernelTotals, PaperGpu, PAPER_GPUS};
pub use generate::GpuGenerator;
pub use kernels::{AdamDispatch, AdamHyper, AdamShard, DecodeParams, EmbeddingParams, Kernels};
pub use matmul::{submit, Dispatch, GpuQuantWeight, Matmul, MatmulDequant, MatmulShape, Strided};
pub use train::{GpuTrainer, PendingStep};
pub use weights::GpuWeights;
pub use weights::{Place, ShardPlan, WtePart};

use crate::{ensure, Error, Result};
use std::sync::{Arc, Mutex};
/// Re-exported so callers name buffer usages and limits without depending on wgpu themselves.
pub use wgpu;

/// A device and queue plus what the adapter offers.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Optional features the adapter offered and the device enabled (timestamp queries; never required).
    pub features: wgpu::Features,
    /// Bytes allocated per category, shared by every buffer created through [`Gpu::buffer`].
    pub ledger: Arc<MemoryLedger>,
    /// Why the device was lost (`device.lost` in WebGPU: a driver reset, a laptop's sleep), once it has been.
    lost: Arc<Mutex<Option<String>>>,
}

impl Gpu {
    /// Requests the default adapter and a device with the adapter's own limits (storage buffers as large as the
    /// hardware allows: WebGPU grants only its defaults unless asked). No optional feature is required.
    pub async fn new() -> Result<Self> {
        Self::with_limits(None).await
    }

    /// [`Gpu::new`] with `limits` requested instead of the adapter's own (e.g. `wgpu::Limits::default()`, WebGPU's
    /// defaults: 128 MiB per storage binding, 256 MiB per buffer), to check that a model trains on any device.
    /// Limits beyond the adapter's are refused by name.
    pub async fn with_limits(limits: Option<wgpu::Limits>) -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::new(format!("no WebGPU adapter: {e}")))?;
        let limits = match limits {
            None => adapter.limits(),
            Some(asked) => {
                let offered = adapter.limits();
                let mut over = Vec::new();
                asked.check_limits_with_fail_fn(&offered, false, |name, want, have| {
                    over.push(format!("{name}: asked {want}, the adapter offers {have}"))
                });
                ensure!(over.is_empty(), "this GPU does not offer the limits asked for: {}", over.join("; "));
                asked
            }
        };
        // Timestamps time kernels in `qlora bench` where the adapter has them. shader-f16 and subgroups are not asked
        // for, because no kernel would use them: f16 arithmetic would break the 1e-4 parity with the CPU executor
        // (and fp16/bf16 weights already decode exactly from two halves per u32, as WebGPU without shader-f16
        // needs), and subgroup reductions would only replace the few barriers of the row reductions in LayerNorm,
        // cross-entropy and the gradient norm — a small share of a step, where WGSL's unspecified layout of
        // subgroups in a workgroup makes a deterministic reduction cost about as many barriers.
        let optional = wgpu::Features::TIMESTAMP_QUERY;
        let features = adapter.features() & optional;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("qlora-playground"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::new(format!("cannot open the GPU device: {e}")))?;
        let lost = Arc::new(Mutex::new(None));
        let record = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            let why = if message.is_empty() { format!("{reason:?}") } else { format!("{reason:?}: {message}") };
            *record.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        });
        Ok(Gpu {
            device,
            queue,
            info: adapter.get_info(),
            limits,
            features,
            ledger: Arc::new(MemoryLedger::default()),
            lost,
        })
    }

    /// Why the device was lost, if it was (the callback may arrive after the first failed operation). Natively the
    /// callback runs when the device is polled, so this polls first, without waiting; in a browser it comes as an
    /// event.
    pub fn lost(&self) -> Option<String> {
        let _ = self.device.poll(wgpu::PollType::Poll);
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Native convenience: [`Gpu::new`] driven to completion.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Self> {
        pollster::block_on(Self::new())
    }

    /// Native convenience: [`Gpu::with_limits`] driven to completion.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_limits_blocking(limits: wgpu::Limits) -> Result<Self> {
        pollster::block_on(Self::with_limits(Some(limits)))
    }

    /// A storage buffer of `bytes` bytes, tagged with its category in the ledger. Refuses sizes over the device's
    /// limits with a message naming the limit.
    pub fn buffer(&self, label: &str, bytes: u64, category: Category, usage: wgpu::BufferUsages) -> Result<GpuBuffer> {
        let bytes = bytes.max(4).next_multiple_of(4);
        let max_binding = self.limits.max_storage_buffer_binding_size;
        if bytes > max_binding || bytes > self.limits.max_buffer_size {
            return Err(Error::new(format!(
                "{label}: {bytes} bytes, but this GPU binds at most {max_binding} bytes per storage buffer \
                 (maxStorageBufferBindingSize), {} over; use a smaller batch, sequence or model",
                bytes - max_binding.min(bytes)
            )));
        }
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: usage | wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Ok(GpuBuffer::new(buffer, category, self.ledger.clone()))
    }

    /// Refuses a matmul whose 16×16 tiles would need more workgroups per dimension than the device allows.
    pub fn check_matmul_grid(&self, label: &str, rows: usize, cols: usize) -> Result<()> {
        let max = self.limits.max_compute_workgroups_per_dimension as usize;
        for (what, n) in [("rows", rows), ("columns", cols)] {
            let groups = n.div_ceil(16);
            if groups > max {
                return Err(Error::new(format!(
                    "{label}: {n} {what} need {groups} workgroups but this GPU allows {max} per dimension \
                     (maxComputeWorkgroupsPerDimension), {} over; use a smaller batch × sequence",
                    groups - max
                )));
            }
        }
        Ok(())
    }

    /// A buffer holding `data`.
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T], category: Category) -> Result<GpuBuffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let buf = self.buffer(label, bytes.len() as u64, category, wgpu::BufferUsages::empty())?;
        if !bytes.is_empty() {
            let mut padded = bytes.to_vec();
            padded.resize(buf.size() as usize, 0);
            self.queue.write_buffer(buf.raw(), 0, &padded);
        }
        Ok(buf)
    }

    /// Copies a buffer back to the CPU as f32 values (awaiting `map_async`; never blocks on wasm).
    pub async fn read_f32(&self, buf: &GpuBuffer, len: usize) -> Result<Vec<f32>> {
        let bytes = (len * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf.raw(), 0, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let mut out = self.map_read(&staging).await?;
        out.truncate(len);
        Ok(out)
    }

    /// Maps a MAP_READ buffer (after the work that fills it was submitted), copies it out as f32 and unmaps it.
    pub async fn map_read(&self, staging: &wgpu::Buffer) -> Result<Vec<f32>> {
        self.map_read_after(staging, None).await
    }

    /// [`Gpu::map_read`] for a buffer filled by `submission`: natively only that submission is waited for, so work
    /// submitted after it keeps the GPU busy meanwhile (`None`: everything submitted so far).
    pub async fn map_read_after(
        &self,
        staging: &wgpu::Buffer,
        submission: Option<wgpu::SubmissionIndex>,
    ) -> Result<Vec<f32>> {
        Ok(bytemuck::cast_slice::<u8, f32>(&self.map_read_bytes_after(staging, submission).await?).to_vec())
    }

    /// Maps a MAP_READ buffer and copies out its bytes.
    pub async fn map_read_bytes(&self, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
        self.map_read_bytes_after(staging, None).await
    }

    async fn map_read_bytes_after(
        &self,
        staging: &wgpu::Buffer,
        submission: Option<wgpu::SubmissionIndex>,
    ) -> Result<Vec<u8>> {
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::Wait { submission_index: submission, timeout: None });
        #[cfg(target_arch = "wasm32")]
        let _ = submission;
        rx.await
            .map_err(|_| Error::new("the GPU device was lost during a readback"))?
            .map_err(|e| Error::new(format!("GPU readback failed: {e}")))?;
        let view = staging.slice(..).get_mapped_range().map_err(|e| Error::new(format!("GPU readback failed: {e}")))?;
        let out = view.to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// GPU time of one dispatch in seconds, from timestamp queries when the device has them (`None` otherwise).
    pub async fn time_dispatch(&self, dispatch: &Dispatch) -> Result<Option<f64>> {
        if !self.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Ok(None);
        }
        let set = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timing"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps readback"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("timed"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                }),
            });
            dispatch.record(&mut pass);
        }
        enc.resolve_query_set(&set, 0..2, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, 16);
        self.queue.submit([enc.finish()]);
        let bytes = self.map_read_bytes(&staging).await?;
        let t: &[u64] = bytemuck::cast_slice(&bytes);
        let ticks = t[1].saturating_sub(t[0]) as f64;
        Ok(Some(ticks * self.queue.get_timestamp_period() as f64 * 1e-9))
    }

    /// Natively, blocks until all submitted work is done (for timing); a no-op on wasm, where nothing may block.
    pub fn wait(&self) {
        self.poll_native();
    }

    /// Natively, drives the device until submitted work and callbacks are done; on wasm the browser does this.
    fn poll_native(&self) {
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
    }

    pub(crate) fn shader(&self, label: &str, source: &str) -> wgpu::ShaderModule {
        self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        })
    }

    /// The pipeline of one entry point of `module`, with the bind-group layout that entry point implies.
    /// The pipeline of `entry` in `module` with its layout taken from the shader, and `constants` for its pipeline
    /// constants (`override` declarations).
    pub(crate) fn pipeline_at(
        &self,
        label: &str,
        module: &wgpu::ShaderModule,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> wgpu::ComputePipeline {
        self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(label),
            layout: None,
            module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
            cache: None,
        })
    }

    /// A small uniform buffer (not counted in the ledger: parameters, not data).
    pub(crate) fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: std::mem::size_of::<T>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buf, 0, bytemuck::bytes_of(value));
        buf
    }
}

/// Workgroups needed to cover `n` items in groups of `size`.
pub(crate) fn groups(n: u32, size: u32) -> u32 {
    n.div_ceil(size)
}
