// Live SVG chart of speed over time: one line per direction, x in seconds since that
// direction's test started, y in Mbit/s (10^6 bit/s) or Gbit/s, scaled to the largest value.

const SVG_NS = 'http://www.w3.org/2000/svg';
// The viewBox follows the element's width in CSS pixels, so labels keep their size at any width.
const DEFAULT_WIDTH = 600;
const MIN_WIDTH = 280;
const HEIGHT = 200;
const PADDING = { left: 44, right: 10, top: 12, bottom: 24 };
// The y axis gets about this many grid steps of 1, 2 or 5 times a power of ten.
const TARGET_GRID_STEPS = 4;

/** Returns the grid step (1, 2 or 5 times a power of ten) and axis maximum for a largest value. */
function yAxisScale(maxValue) {
  if (maxValue <= 0) {
    return { step: 0.25, max: 1 };
  }
  const rawStep = maxValue / TARGET_GRID_STEPS;
  const power = 10 ** Math.floor(Math.log10(rawStep));
  const multiple = [1, 2, 5, 10].find((candidate) => candidate * power >= rawStep);
  const step = multiple * power;
  return { step, max: step * Math.ceil(maxValue / step) };
}

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) {
    element.setAttribute(key, String(value));
  }
  return element;
}

export class SpeedChart {
  /** Draws into the given <svg> element, with an x axis of maxSeconds until points go beyond it. */
  constructor(svg, maxSeconds) {
    this.svg = svg;
    this.maxSeconds = maxSeconds;
    this.series = { download: [], upload: [] };
    window.addEventListener('resize', () => this.draw());
    this.draw();
  }

  reset(maxSeconds) {
    this.maxSeconds = maxSeconds;
    this.series = { download: [], upload: [] };
    this.draw();
  }

  /** Adds a point of direction's line: seconds since its start and a rate in bit/s. */
  add(direction, seconds, bps) {
    this.series[direction].push({ seconds, bps });
    this.draw();
  }

  draw() {
    const width = Math.max(MIN_WIDTH, Math.round(this.svg.clientWidth || DEFAULT_WIDTH));
    this.svg.setAttribute('viewBox', `0 0 ${width} ${HEIGHT}`);
    const points = [...this.series.download, ...this.series.upload];
    const maxBps = points.reduce((max, point) => Math.max(max, point.bps), 0);
    const useGbit = maxBps >= 1e9;
    const unitBps = useGbit ? 1e9 : 1e6;
    const { step: yStep, max: yMax } = yAxisScale(maxBps / unitBps);
    const gridLines = Math.round(yMax / yStep);
    const xMax = Math.max(this.maxSeconds, ...points.map((point) => point.seconds));
    const plotWidth = width - PADDING.left - PADDING.right;
    const plotHeight = HEIGHT - PADDING.top - PADDING.bottom;
    const x = (seconds) => PADDING.left + (seconds / xMax) * plotWidth;
    const y = (bps) => PADDING.top + plotHeight - (bps / unitBps / yMax) * plotHeight;

    this.svg.replaceChildren();
    for (let i = 0; i <= gridLines; i++) {
      const value = yStep * i;
      const lineY = y(value * unitBps);
      this.svg.append(
        svgElement('line', { class: 'chart-grid', x1: PADDING.left, x2: width - PADDING.right, y1: lineY, y2: lineY }),
      );
      const label = svgElement('text', { class: 'chart-label', x: PADDING.left - 6, y: lineY + 4, 'text-anchor': 'end' });
      label.textContent = String(Number(value.toPrecision(3)));
      this.svg.append(label);
    }
    const unitLabel = svgElement('text', { class: 'chart-label', x: PADDING.left - 6, y: HEIGHT - 4, 'text-anchor': 'end' });
    unitLabel.textContent = useGbit ? 'Gbit/s' : 'Mbit/s';
    this.svg.append(unitLabel);
    const timeLabel = svgElement('text', { class: 'chart-label', x: width - PADDING.right, y: HEIGHT - 4, 'text-anchor': 'end' });
    timeLabel.textContent = `${Math.round(xMax)} s`;
    this.svg.append(timeLabel);

    for (const direction of ['download', 'upload']) {
      const series = this.series[direction];
      if (series.length === 0) {
        continue;
      }
      const path = series.map((point) => `${x(point.seconds).toFixed(1)},${y(point.bps).toFixed(1)}`).join(' ');
      this.svg.append(
        svgElement('polyline', {
          class: `chart-line chart-${direction}`,
          points: `${x(0)},${y(0)} ${path}`,
          'vector-effect': 'non-scaling-stroke',
        }),
      );
    }
  }
}
