/** Shown instead of the studio when this browser cannot give us a GPU. */
export function NoWebGpu({ problem }: { problem: string }) {
  return (
    <main className="no-webgpu" role="alert">
      <h1>QLoRA Studio needs WebGPU</h1>
      <p>{problem}</p>
      <ul>
        <li>Use a current Chrome, Edge or other Chromium browser (version 113 or later), or a browser with WebGPU turned on.</li>
        <li>Open the studio from <code>https://</code> or <code>http://localhost</code>: browsers hide WebGPU on plain http pages.</li>
        <li>On Linux, Chrome may need <code>chrome://flags/#enable-unsafe-webgpu</code> and <code>chrome://flags/#enable-vulkan</code>.</li>
        <li>Check <code>chrome://gpu</code>: WebGPU must say "Hardware accelerated".</li>
      </ul>
    </main>
  );
}
