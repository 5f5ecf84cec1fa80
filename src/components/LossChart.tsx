import { useEffect, useMemo, useRef, useState } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { useStudio, type MetricPoint } from '../store';
import { smooth } from '../format';

type Series = [number[], (number | null)[], (number | null)[], (number | null)[]];

/** Steps on x; raw train loss, smoothed train loss and validation loss aligned to them. */
function toSeries(points: MetricPoint[], smoothing: number): Series {
  const steps = points.map((p) => p.step);
  const train = points.map((p) => p.loss ?? null);
  const val = points.map((p) => p.valLoss ?? null);
  return [steps, train, smooth(train, smoothing), val];
}

/** The live loss curve (uPlot): train and validation loss, smoothing, linear or log scale. */
export function LossChart() {
  const points = useStudio((s) => s.metrics);
  const [smoothing, setSmoothing] = useState(0.6);
  const [logScale, setLogScale] = useState(false);
  const holder = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const data = useMemo(() => toSeries(points, smoothing), [points, smoothing]);
  const dataRef = useRef(data);
  dataRef.current = data;

  useEffect(() => {
    const el = holder.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: Math.max(320, el.clientWidth),
      height: 280,
      scales: { x: { time: false }, y: { distr: logScale ? 3 : 1 } },
      axes: [{ label: 'step' }, { label: 'loss' }],
      legend: { live: true },
      series: [
        { label: 'step' },
        { label: 'train loss', stroke: 'rgba(43, 108, 176, 0.35)', width: 1, spanGaps: true },
        { label: 'train (smoothed)', stroke: '#2b6cb0', width: 2, spanGaps: true },
        { label: 'validation loss', stroke: '#d9480f', width: 2, spanGaps: true, points: { show: true, size: 6 } },
      ],
    };
    const u = new uPlot(opts, dataRef.current as uPlot.AlignedData, el);
    plot.current = u;
    const resize = new ResizeObserver(() => u.setSize({ width: Math.max(320, el.clientWidth), height: 280 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [logScale]);

  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  }, [data]);

  const losses = points.filter((p) => p.loss !== undefined);
  return (
    <figure
      className="chart"
      aria-label="Loss chart"
      data-testid="loss-chart"
      data-points={losses.length}
      data-losses={JSON.stringify(losses.map((p) => p.loss))}
    >
      <div className="chart-controls">
        <label>
          Smoothing{' '}
          <input type="range" min={0} max={0.99} step={0.01} value={smoothing} onChange={(e) => setSmoothing(Number(e.target.value))} aria-label="Smoothing" />{' '}
          {smoothing.toFixed(2)}
        </label>
        <label>
          <input type="checkbox" checked={logScale} onChange={(e) => setLogScale(e.target.checked)} /> Log scale
        </label>
      </div>
      <div ref={holder} className="chart-canvas" />
      {points.length === 0 && <figcaption className="muted">The loss appears here as soon as the first step finishes.</figcaption>}
    </figure>
  );
}
