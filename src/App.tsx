import { useEffect } from 'react';
import { useStudio } from './store';
import { boot } from './actions';
import { AdapterPanel } from './components/AdapterPanel';
import { NoWebGpu } from './components/NoWebGpu';
import { SectionNav } from './components/SectionNav';
import { ModelSection } from './components/ModelSection';
import { DataSection } from './components/DataSection';
import { SettingsSection } from './components/SettingsSection';
import { ResumeBanner, TrainSection } from './components/TrainSection';
import { InterruptedLoad } from './components/InterruptedLoad';
import { ChatSection } from './components/ChatSection';
import { ExportSection } from './components/ExportSection';

export function App() {
  const status = useStudio((s) => s.status);
  const problem = useStudio((s) => s.problem);

  useEffect(() => {
    void boot();
  }, []);

  if (status === 'no-webgpu' && problem) return <NoWebGpu problem={problem} />;
  return (
    <div className="studio">
      <header>
        <h1>QLoRA Studio</h1>
        <p className="tagline">Fine-tune language models with QLoRA on your own GPU, in this tab.</p>
      </header>
      {problem && <p role="alert" className="error">{problem}</p>}
      <ResumeBanner />
      <InterruptedLoad />
      <div className="layout">
        <SectionNav />
        <main>
          <ModelSection />
          <DataSection />
          <SettingsSection />
          <TrainSection />
          <ChatSection />
          <ExportSection />
          <AdapterPanel />
        </main>
      </div>
    </div>
  );
}
