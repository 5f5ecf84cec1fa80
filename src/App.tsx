import { useEffect } from 'react';
import { engine, Comlink } from './engine-client';
import { useStudio } from './store';
import { AdapterPanel } from './components/AdapterPanel';
import { NoWebGpu } from './components/NoWebGpu';

export function App() {
  const status = useStudio((s) => s.status);
  const problem = useStudio((s) => s.problem);

  useEffect(() => {
    const { setInit, onEvent } = useStudio.getState();
    engine()
      .init(Comlink.proxy(onEvent))
      .then((init) => setInit(init.status, init.adapter, init.problem))
      .catch((err: Error) => setInit('no-webgpu', null, `The engine could not start: ${err.message}`));
  }, []);

  if (status === 'no-webgpu' && problem) return <NoWebGpu problem={problem} />;
  return (
    <div className="studio">
      <header>
        <h1>QLoRA Studio</h1>
        <p className="tagline">Fine-tune language models with QLoRA on your own GPU, in this tab.</p>
      </header>
      {problem && <p role="alert" className="error">{problem}</p>}
      <main>
        <AdapterPanel />
      </main>
    </div>
  );
}
