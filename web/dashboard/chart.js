// A small live line chart on a canvas: one device's last minutes, two series with their own
// y scales (left and right axes), a time axis, a grid and a legend. No library; redrawn whole
// (a few hundred points) when the device reports, at most once per animation frame.

const COLORS = ['#2563eb', '#0d9488'];
const GRID = '#e5e7eb';
const AXIS_TEXT = '#6b7280';
const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

const pad2 = (n) => (n < 10 ? `0${n}` : String(n));
const clock = (t) => {
    const d = new Date(t);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
};

/** Round numbers for an axis from lo to hi (about `count` ticks). */
export function niceTicks(lo, hi, count = 4) {
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
    if (hi - lo < 1e-9) {
        lo -= 1;
        hi += 1;
    }
    const raw = (hi - lo) / count;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
    // From the step at or below lo to the step at or above hi: the ticks cover the range.
    const ticks = [];
    const first = Math.floor(lo / step + 1e-9);
    const last = Math.ceil(hi / step - 1e-9);
    for (let k = first; k <= last; k++) ticks.push(Number((k * step).toPrecision(12)));
    return ticks;
}

export class LineChart {
    /** @param {HTMLCanvasElement} canvas */
    constructor(canvas) {
        this.canvas = canvas;
        this.ctx = canvas.getContext('2d');
        this.series = [];
        this.history = null;
        this.windowMs = 5 * 60 * 1000;
        this.width = 0;
        this.height = 0;
        this.frame = 0;
        if (typeof ResizeObserver === 'function') {
            this.resizer = new ResizeObserver(() => this.requestDraw());
            this.resizer.observe(canvas);
        }
    }

    /**
     * @param {import('./store.js').History|null} history
     * @param {Array<[string, string, string]>} series  [key, label, unit] ×2
     */
    show(history, series) {
        this.history = history;
        this.series = series;
        this.requestDraw();
    }

    requestDraw() {
        if (this.frame) return;
        this.frame = requestAnimationFrame(() => {
            this.frame = 0;
            this.draw();
        });
    }

    resize() {
        const ratio = window.devicePixelRatio || 1;
        const rect = this.canvas.getBoundingClientRect();
        const width = Math.max(1, Math.round(rect.width));
        const height = Math.max(1, Math.round(rect.height));
        if (width !== this.width || height !== this.height || this.ratio !== ratio) {
            this.width = width;
            this.height = height;
            this.ratio = ratio;
            this.canvas.width = Math.round(width * ratio);
            this.canvas.height = Math.round(height * ratio);
        }
        this.ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    }

    draw() {
        this.resize();
        const { ctx, width, height } = this;
        ctx.clearRect(0, 0, width, height);
        ctx.font = FONT;
        const history = this.history;
        const left = 44;
        const right = width - 44;
        const top = 22;
        const bottom = height - 22;
        if (!history || history.length === 0 || right - left < 40 || bottom - top < 30) {
            ctx.fillStyle = AXIS_TEXT;
            ctx.textAlign = 'center';
            ctx.fillText('waiting for data…', width / 2, height / 2);
            return;
        }
        let tMax = -Infinity;
        let tFirst = Infinity;
        history.forEach((t) => {
            if (t > tMax) tMax = t;
            if (t < tFirst) tFirst = t;
        });
        // Up to the last five minutes; a device seen only briefly fills the width anyway.
        const windowMs = Math.min(this.windowMs, Math.max(60000, tMax - tFirst));
        const tMin = tMax - windowMs;
        const ranges = [[Infinity, -Infinity], [Infinity, -Infinity]];
        history.forEach((t, a, b) => {
            if (t < tMin) return;
            [a, b].forEach((v, i) => {
                if (Number.isFinite(v)) {
                    ranges[i][0] = Math.min(ranges[i][0], v);
                    ranges[i][1] = Math.max(ranges[i][1], v);
                }
            });
        });
        const scales = ranges.map(([lo, hi]) => {
            if (!Number.isFinite(lo)) return null;
            const span = Math.max(hi - lo, Math.abs(hi) * 0.02, 0.5);
            const ticks = niceTicks(lo - span * 0.15, hi + span * 0.15);
            const min = ticks[0];
            const max = ticks[ticks.length - 1];
            return { ticks, min, max, y: (v) => bottom - ((v - min) / (max - min || 1)) * (bottom - top) };
        });
        const x = (t) => left + ((t - tMin) / windowMs) * (right - left);

        // grid and left axis (series 0), right axis (series 1)
        ctx.lineWidth = 1;
        ctx.strokeStyle = GRID;
        ctx.fillStyle = AXIS_TEXT;
        if (scales[0]) {
            ctx.textAlign = 'right';
            ctx.textBaseline = 'middle';
            for (const v of scales[0].ticks) {
                const y = Math.round(scales[0].y(v)) + 0.5;
                ctx.beginPath();
                ctx.moveTo(left, y);
                ctx.lineTo(right, y);
                ctx.stroke();
                ctx.fillText(formatTick(v), left - 6, y);
            }
        }
        if (scales[1]) {
            ctx.textAlign = 'left';
            ctx.textBaseline = 'middle';
            for (const v of scales[1].ticks) ctx.fillText(formatTick(v), right + 6, scales[1].y(v));
        }
        // time axis: a label every minute
        ctx.textAlign = 'center';
        ctx.textBaseline = 'top';
        const step = windowMs <= 120000 ? 15000 : 60000;
        for (let t = Math.ceil(tMin / step) * step; t <= tMax; t += step) {
            const px = Math.round(x(t)) + 0.5;
            ctx.strokeStyle = GRID;
            ctx.beginPath();
            ctx.moveTo(px, top);
            ctx.lineTo(px, bottom);
            ctx.stroke();
            ctx.fillText(step < 60000 ? clock(t) : clock(t).slice(0, 5), px, bottom + 5);
        }
        // series, clipped to the plot area
        ctx.save();
        ctx.beginPath();
        ctx.rect(left, top - 2, right - left, bottom - top + 4);
        ctx.clip();
        scales.forEach((scale, i) => {
            if (!scale) return;
            ctx.strokeStyle = COLORS[i];
            ctx.lineWidth = 2;
            ctx.lineJoin = 'round';
            ctx.beginPath();
            let drawing = false;
            history.forEach((t, a, b) => {
                const v = i === 0 ? a : b;
                if (t < tMin || !Number.isFinite(v)) {
                    drawing = false;
                    return;
                }
                if (drawing) ctx.lineTo(x(t), scale.y(v));
                else ctx.moveTo(x(t), scale.y(v));
                drawing = true;
            });
            ctx.stroke();
        });
        ctx.restore();
        // legend
        ctx.textBaseline = 'middle';
        ctx.textAlign = 'left';
        let lx = left;
        this.series.forEach(([, label, unit], i) => {
            if (!scales[i]) return;
            ctx.fillStyle = COLORS[i];
            ctx.fillRect(lx, 7, 14, 3);
            ctx.fillStyle = '#374151';
            const text = `${label} (${unit})`;
            ctx.fillText(text, lx + 19, 9);
            lx += 19 + ctx.measureText(text).width + 16;
        });
    }
}

function formatTick(v) {
    const abs = Math.abs(v);
    if (abs >= 1000) return v.toFixed(0);
    if (abs >= 10) return v.toFixed(abs % 1 === 0 ? 0 : 1);
    return v.toFixed(abs % 1 === 0 ? 0 : 1);
}
