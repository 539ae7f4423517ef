// Charts: Chart.js from the gateway itself (window.Chart, loaded by
// index.html from /assets/vendor/chart.min.js). Animations are off: the
// overview redraws every second.

export const COLORS = {
  blue: '#2f6fb3', green: '#2e8b57', amber: '#c98a0b', red: '#c0392b', purple: '#7b4bb7',
  grey: '#6b7785', teal: '#16808a',
};

export function chartAvailable() {
  return typeof window.Chart === 'function';
}

// A chart in <canvas> inside a sized box; <datasets> [{label, color, data}].
export function lineChart(canvas, labels, datasets, opts) {
  const o = opts || {};
  return new window.Chart(canvas, {
    type: o.type || 'line',
    data: {
      labels,
      datasets: datasets.map((d) => ({
        label: d.label, data: d.data, borderColor: d.color, backgroundColor: d.fill || d.color,
        borderWidth: 2, pointRadius: o.points ? 2 : 0, tension: 0.2, fill: false,
        borderDash: d.dash, stepped: d.stepped || false, stack: d.stack,
      })),
    },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: {mode: 'index', intersect: false},
      plugins: {legend: {display: datasets.length > 1, labels: {boxWidth: 12}}},
      scales: {
        x: {stacked: !!o.stacked, ticks: {maxTicksLimit: 8, maxRotation: 0}},
        y: {stacked: !!o.stacked, beginAtZero: true, suggestedMax: o.suggestedMax,
            max: o.max, ticks: {maxTicksLimit: 6}},
      },
    },
  });
}
