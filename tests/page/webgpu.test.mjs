// The playground on WebGPU (headless Chromium, SwiftShader).
import { playgroundTests } from './playground.mjs';
playgroundTests('webgpu');
