import { useEffect, useState } from 'react';
import { useShallow } from 'zustand/react/shallow';
import { useStudio } from '../store';
import { validateSettings } from '../settings';
import { SECTIONS } from './Section';
import type { Section } from '../../workers/protocol';

type Progress = Record<Section, boolean>;

/** Which steps are complete, derived from the store (not from clicks). */
function useDone(): Progress {
  return useStudio(useShallow((s): Progress => {
    const model = s.model;
    const preset = model.kind === 'preset' ? s.presets.find((p) => p.name === model.name) : undefined;
    const trained = s.train.step > 0 || s.metrics.length > 0;
    const settingsValid = !!s.settings && Object.keys(validateSettings(s.settings, preset?.targetModules ?? [])).length === 0;
    return {
      model: !!s.modelInfo || (!!s.plan && s.plan.verdict !== 'does-not-fit') || trained,
      data: !!s.dataset || trained,
      settings: settingsValid,
      train: trained && ['done', 'stopped', 'paused'].includes(s.train.state),
      chat: s.chat.adapter.length > 0,
      export: false,
    };
  }));
}

/** The studio's steps: where the person is (the section in view), what is done, and what is next. */
export function SectionNav() {
  const done = useDone();
  const [current, setCurrent] = useState<Section>('model');
  useEffect(() => {
    // Sections in the upper part of the viewport; the first of them is where the person is.
    const inView = new Map<string, boolean>();
    const observer = new IntersectionObserver(
      (entries) => {
        for (const e of entries) inView.set(e.target.id, e.isIntersecting);
        const first = SECTIONS.find((s) => inView.get(s.id));
        if (first) setCurrent(first.id);
      },
      { rootMargin: '0px 0px -60% 0px' },
    );
    for (const { id } of SECTIONS) {
      const el = document.getElementById(id);
      if (el) observer.observe(el);
    }
    return () => observer.disconnect();
  }, []);
  const next = SECTIONS.find((s) => !done[s.id]);
  return (
    <nav aria-label="Steps" className="steps">
      <ol>
        {SECTIONS.map((s, i) => (
          <li key={s.id} className={`${done[s.id] ? 'done' : ''} ${current === s.id ? 'current' : ''}`}>
            <a href={`#${s.id}`} aria-current={current === s.id ? 'step' : undefined}>
              <span className="step-number">{done[s.id] ? '✓' : i + 1}</span> {s.title}
            </a>
          </li>
        ))}
      </ol>
      {next && <p className="next" data-testid="next-step">Next: <a href={`#${next.id}`}>{next.title}</a></p>}
    </nav>
  );
}
