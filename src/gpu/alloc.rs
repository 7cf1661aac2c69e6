//! Every GPU buffer is created through one place that tags it with a memory category, so the bytes the page shows as
//! "measured" are the bytes actually allocated, per category, and can be held against the accounting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    BaseWeights,
    QuantConstants,
    Adapters,
    Gradients,
    Optimizer,
    Activations,
    Scratch,
}

impl Category {
    pub const ALL: [Category; 7] = [
        Category::BaseWeights,
        Category::QuantConstants,
        Category::Adapters,
        Category::Gradients,
        Category::Optimizer,
        Category::Activations,
        Category::Scratch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::BaseWeights => "base_weights",
            Category::QuantConstants => "quant_constants",
            Category::Adapters => "adapters",
            Category::Gradients => "gradients",
            Category::Optimizer => "optimizer",
            Category::Activations => "activations",
            Category::Scratch => "scratch",
        }
    }

    fn index(self) -> usize {
        Category::ALL.iter().position(|c| *c == self).expect("listed")
    }
}

/// Live bytes per category.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    bytes: [AtomicU64; 7],
}

impl MemoryLedger {
    pub fn bytes(&self, c: Category) -> u64 {
        self.bytes[c.index()].load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Vec<(Category, u64)> {
        Category::ALL.iter().map(|c| (*c, self.bytes(*c))).collect()
    }
}

/// A buffer that credits its category in the ledger while it lives.
pub struct GpuBuffer {
    buffer: wgpu::Buffer,
    category: Category,
    ledger: Arc<MemoryLedger>,
}

impl GpuBuffer {
    pub(super) fn new(buffer: wgpu::Buffer, category: Category, ledger: Arc<MemoryLedger>) -> Self {
        ledger.bytes[category.index()].fetch_add(buffer.size(), Ordering::Relaxed);
        GpuBuffer { buffer, category, ledger }
    }

    pub fn raw(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    pub fn size(&self) -> u64 {
        self.buffer.size()
    }

    pub fn category(&self) -> Category {
        self.category
    }

    /// The whole buffer as a binding.
    pub fn all(&self) -> View<'_> {
        View { buf: self, offset: 0, size: None }
    }

    /// `len` f32 values starting at value `start` (its byte offset must meet the device's storage-offset alignment;
    /// layouts built by the GPU trainer pad every tensor to guarantee it).
    pub fn view(&self, start: usize, len: usize) -> View<'_> {
        View { buf: self, offset: 4 * start as u64, size: Some(4 * len.max(1) as u64) }
    }
}

/// A range of a buffer bound to a kernel.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub buf: &'a GpuBuffer,
    pub offset: u64,
    pub size: Option<u64>,
}

impl<'a> View<'a> {
    pub fn binding(&self) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buf.raw(),
            offset: self.offset,
            size: self.size.and_then(wgpu::BufferSize::new),
        })
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        self.ledger.bytes[self.category.index()].fetch_sub(self.buffer.size(), Ordering::Relaxed);
    }
}
