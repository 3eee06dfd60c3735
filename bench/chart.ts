import { limitsOf } from './limit.ts';
import type { Report } from './report.ts';

/**
 * The run as an SVG picture, written by hand so the benchmark needs no charting library: the
 * throughput of every scenario as a bar against the limit of its queue type, and the latency
 * of the steady runs against their publish rate.
 */

const WIDTH = 900;
const BAR_HEIGHT = 18;
const LEFT = 260;
const RIGHT = 40;
const COLORS = { bar: '#4a78b5', limit: '#c0392b', p50: '#27ae60', p99: '#e67e22', p999: '#8e44ad' };

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Round numbers for an axis: the step is 1, 2 or 5 times a power of ten. */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * power >= raw) ?? 10) * power;
  const ticks: number[] = [];
  for (let value = 0; value <= max + step / 2; value += step) ticks.push(Number(value.toPrecision(12)));
  return ticks;
}

const text = (x: number, y: number, content: string, attrs = ''): string =>
  `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${escapeXml(content)}</text>`;

function throughputPanel(report: Report, top: number): { svg: string[]; height: number } {
  const rows = report.scenarios.filter((result) => result.jobsPerSecond > 0);
  const limits = limitsOf(report.scenarios, report.machine.cores, report.options.batch);
  const max = Math.max(1, ...rows.map((r) => r.jobsPerSecond), ...limits.map((l) => l.combined));
  const ticks = niceTicks(max);
  const scaleMax = ticks.at(-1) ?? max;
  const plotWidth = WIDTH - LEFT - RIGHT;
  const x = (value: number): number => LEFT + (plotWidth * value) / scaleMax;
  const plotTop = top + 30;
  const plotHeight = rows.length * (BAR_HEIGHT + 6);
  const svg = [
    text(
      10,
      top + 16,
      `Throughput, jobs/s (${report.options.batch ? 'batch' : 'single'} mode) against the limit`,
      'font-weight="bold"',
    ),
  ];
  for (const tick of ticks) {
    svg.push(
      `<line x1="${x(tick).toFixed(1)}" y1="${plotTop}" x2="${x(tick).toFixed(1)}" y2="${plotTop + plotHeight}" stroke="#ddd"/>`,
      text(
        x(tick),
        plotTop + plotHeight + 14,
        tick.toLocaleString('en-US'),
        'text-anchor="middle" font-size="11"',
      ),
    );
  }
  rows.forEach((row, i) => {
    const y = plotTop + i * (BAR_HEIGHT + 6);
    svg.push(
      text(LEFT - 8, y + BAR_HEIGHT - 5, row.label, 'text-anchor="end" font-size="12"'),
      `<rect x="${LEFT}" y="${y}" width="${(x(row.jobsPerSecond) - LEFT).toFixed(1)}" height="${BAR_HEIGHT}" fill="${COLORS.bar}"/>`,
      text(x(row.jobsPerSecond) + 4, y + BAR_HEIGHT - 5, row.jobsPerSecond.toFixed(0), 'font-size="11"'),
    );
  });
  limits.forEach((limit, i) => {
    const lx = x(limit.combined);
    svg.push(
      `<line x1="${lx.toFixed(1)}" y1="${plotTop - 4}" x2="${lx.toFixed(1)}" y2="${plotTop + plotHeight}" stroke="${COLORS.limit}" stroke-dasharray="5,3" stroke-width="2"/>`,
      text(
        lx,
        plotTop - 8 - 12 * i,
        `limit, ${limit.queueType}: ${limit.combined.toFixed(0)}`,
        `text-anchor="middle" font-size="11" fill="${COLORS.limit}"`,
      ),
    );
  });
  return { svg, height: plotHeight + 60 + 12 * Math.max(0, limits.length - 1) };
}

function latencyPanel(report: Report, top: number): { svg: string[]; height: number } {
  const runs = report.scenarios
    .filter((result) => result.name === 'steady' && result.rate !== undefined && result.latency !== undefined)
    .sort((a, b) => (a.rate ?? 0) - (b.rate ?? 0));
  if (runs.length === 0) return { svg: [], height: 0 };
  const height = 220;
  const plotTop = top + 30;
  const plotHeight = height - 70;
  const plotWidth = WIDTH - LEFT - RIGHT;
  const series = [
    { name: 'p50', color: COLORS.p50, value: (r: (typeof runs)[number]) => r.latency?.p50Ms },
    { name: 'p99', color: COLORS.p99, value: (r: (typeof runs)[number]) => r.latency?.p99Ms },
    { name: 'p99.9', color: COLORS.p999, value: (r: (typeof runs)[number]) => r.latency?.p999Ms },
  ];
  const values = runs.flatMap((r) => series.map((s) => s.value(r) ?? 0)).filter(Number.isFinite);
  const yTicks = niceTicks(Math.max(1, ...values));
  const yMax = yTicks.at(-1) ?? 1;
  const xTicks = niceTicks(Math.max(...runs.map((r) => r.rate ?? 0)));
  const xMax = xTicks.at(-1) ?? 1;
  const x = (rate: number): number => LEFT + (plotWidth * rate) / xMax;
  const y = (ms: number): number => plotTop + plotHeight - (plotHeight * Math.min(ms, yMax)) / yMax;
  const svg = [
    text(
      10,
      top + 16,
      'Latency publish → job row, ms, against the publish rate (msg/s)',
      'font-weight="bold"',
    ),
  ];
  for (const tick of yTicks) {
    svg.push(
      `<line x1="${LEFT}" y1="${y(tick).toFixed(1)}" x2="${WIDTH - RIGHT}" y2="${y(tick).toFixed(1)}" stroke="#ddd"/>`,
      text(LEFT - 6, y(tick) + 4, String(tick), 'text-anchor="end" font-size="11"'),
    );
  }
  for (const tick of xTicks) {
    svg.push(
      text(
        x(tick),
        plotTop + plotHeight + 14,
        tick.toLocaleString('en-US'),
        'text-anchor="middle" font-size="11"',
      ),
    );
  }
  series.forEach((s, i) => {
    const points = runs.flatMap((r) => {
      const v = s.value(r);
      return v === undefined || !Number.isFinite(v) ? [] : [[x(r.rate ?? 0), y(v)] as const];
    });
    svg.push(
      `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${points.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(' ')}"/>`,
      ...points.map(
        ([px, py]) => `<circle cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" r="3" fill="${s.color}"/>`,
      ),
      text(10, plotTop + 14 + 16 * i, s.name, `font-size="12" fill="${s.color}"`),
    );
  });
  runs.forEach((r) => {
    if (r.keptUp === false)
      svg.push(
        text(
          x(r.rate ?? 0),
          plotTop + 10,
          'fell behind',
          `text-anchor="middle" font-size="11" fill="${COLORS.limit}"`,
        ),
      );
  });
  return { svg, height };
}

export function chartSvg(report: Report): string {
  const header = `${report.startedAt} · ${report.machine.cores} cores · load ${report.machine.loadAverage.join(' ')} · endpoint ${report.endpoint.kind} (${report.endpoint.version})`;
  const throughput = throughputPanel(report, 24);
  const latency = latencyPanel(report, 24 + throughput.height);
  const height = 24 + throughput.height + latency.height + 10;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif">`,
    `<rect width="${WIDTH}" height="${height}" fill="white"/>`,
    text(10, 16, header, 'font-size="11" fill="#555"'),
    ...throughput.svg,
    ...latency.svg,
    '</svg>',
    '',
  ].join('\n');
}
