import type { ReactNode } from 'react';
import { useStudio } from '../store';
import type { Section as SectionId } from '../../workers/protocol';

export const SECTIONS: { id: SectionId; title: string }[] = [
  { id: 'model', title: 'Model' },
  { id: 'data', title: 'Data' },
  { id: 'settings', title: 'Settings' },
  { id: 'train', title: 'Train' },
  { id: 'chat', title: 'Chat' },
  { id: 'export', title: 'Export' },
];

/** One numbered step of the studio, with the problem that happened in it (if any) shown at its top. */
export function Section({ id, lead, children }: { id: SectionId; lead: string; children: ReactNode }) {
  const index = SECTIONS.findIndex((s) => s.id === id);
  const problem = useStudio((s) => s.errors[id]);
  return (
    <section id={id} aria-labelledby={`${id}-title`} className="panel step" data-testid={`section-${id}`}>
      <h2 id={`${id}-title`}>
        <span className="step-number">{index + 1}</span> {SECTIONS[index].title}
      </h2>
      <p className="lead">{lead}</p>
      {problem && (
        <div role="alert" className="problem">
          <strong>{problem.message}</strong>
          {problem.hint && <p>{problem.hint}</p>}
        </div>
      )}
      {children}
    </section>
  );
}
