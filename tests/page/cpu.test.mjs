// The playground's CPU fallback: Chromium without WebGPU, the engine's CPU executor compiled to wasm.
import { playgroundTests } from './playground.mjs';
playgroundTests('cpu');
