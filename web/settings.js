// Test settings of the main page: stored in localStorage, overridden for one page load by
// query parameters (?autostart=0, ?duration=4, ?streams=2, ?tests=download,upload).

const STORAGE_KEY = 'linkspeed.settings';

export const MAX_STREAMS = 6;
export const MIN_DURATION_S = 2;
export const MAX_DURATION_S = 30;
export const TEST_NAMES = ['latency', 'download', 'upload'];

export const DEFAULT_SETTINGS = Object.freeze({
  autostart: true,
  // 'auto', or a fixed number of parallel streams from 1 to MAX_STREAMS.
  streams: 'auto',
  // Maximum duration of the download and of the upload test, each.
  duration_s: 10,
  tests: Object.freeze({ latency: true, download: true, upload: true }),
});

/** Returns a valid stream setting ('auto' or 1..MAX_STREAMS), or null. */
function parseStreams(value) {
  if (value === 'auto') {
    return 'auto';
  }
  const number = Number(value);
  if (Number.isInteger(number) && number >= 1 && number <= MAX_STREAMS) {
    return number;
  }
  return null;
}

/** Returns a valid duration in whole seconds, or null. */
function parseDuration(value) {
  const number = Number(value);
  if (Number.isInteger(number) && number >= MIN_DURATION_S && number <= MAX_DURATION_S) {
    return number;
  }
  return null;
}

/** Copies the valid fields of a stored or user-made object over the defaults. */
export function normalizeSettings(candidate) {
  const settings = {
    autostart: DEFAULT_SETTINGS.autostart,
    streams: DEFAULT_SETTINGS.streams,
    duration_s: DEFAULT_SETTINGS.duration_s,
    tests: { ...DEFAULT_SETTINGS.tests },
  };
  if (!candidate || typeof candidate !== 'object') {
    return settings;
  }
  if (typeof candidate.autostart === 'boolean') {
    settings.autostart = candidate.autostart;
  }
  settings.streams = parseStreams(candidate.streams) ?? settings.streams;
  settings.duration_s = parseDuration(candidate.duration_s) ?? settings.duration_s;
  if (candidate.tests && typeof candidate.tests === 'object') {
    for (const name of TEST_NAMES) {
      if (typeof candidate.tests[name] === 'boolean') {
        settings.tests[name] = candidate.tests[name];
      }
    }
  }
  return settings;
}

/** Reads the stored settings, or the defaults when storage is missing, blocked or corrupt. */
export function loadSettings() {
  try {
    return normalizeSettings(JSON.parse(window.localStorage.getItem(STORAGE_KEY)));
  } catch {
    return normalizeSettings(null);
  }
}

/** Stores the settings and returns false when the browser blocks localStorage. */
export function saveSettings(settings) {
  try {
    window.localStorage.setItem(STORAGE_KEY, JSON.stringify(normalizeSettings(settings)));
    return true;
  } catch {
    return false;
  }
}

/** Returns a copy of settings with the valid query parameters of this page's URL applied. */
export function applyQuery(settings, search) {
  const params = new URLSearchParams(search);
  const result = normalizeSettings(settings);

  if (params.has('autostart')) {
    result.autostart = !['0', 'false', 'no'].includes(params.get('autostart'));
  }
  if (params.has('streams')) {
    result.streams = parseStreams(params.get('streams')) ?? result.streams;
  }
  if (params.has('duration')) {
    result.duration_s = parseDuration(params.get('duration')) ?? result.duration_s;
  }
  if (params.has('tests')) {
    const chosen = params.get('tests').split(',');
    for (const name of TEST_NAMES) {
      result.tests[name] = chosen.includes(name);
    }
  }
  return result;
}
