// Classic speed test: one WebSocket to /ws, TRANSFER_COUNT sequential transfers, then the
// average download speed. The server responds to every text message with one binary
// message of its --payload-size random bytes, so the page never assumes a payload size
// and computes every figure from the bytes that actually arrived.

const TRANSFER_COUNT = 10;
const REQUEST_MESSAGE = 'start';

// Decimal units for speeds (1 MB = 10^6 bytes, 1 Mbit = 10^6 bits), binary units only
// as a second label for sizes, so that "MB" never means 2^20 bytes on this page.
const BYTES_PER_MB = 1e6;
const BYTES_PER_KB = 1e3;
const BYTES_PER_MIB = 1024 * 1024;
const BYTES_PER_KIB = 1024;

// Average speeds in MB/s that separate the "bad", "plain" and "good" ratings.
const BAD_BELOW_MBPS = 10;
const GOOD_ABOVE_MBPS = 50;

// Browsers report no progress inside a WebSocket message, so a stalled transfer can only
// be detected by a limit on the whole message.
// NOTE: 300 s fits the default 10 MiB payload down to about 0.3 Mbit/s. A server with a
// much larger --payload-size on a slow link can hit this limit while still sending.
const TRANSFER_TIMEOUT_MS = 300_000;

const startButton = document.getElementById('start');
const averageLine = document.getElementById('average');
const logPanel = document.getElementById('log');

startButton.addEventListener('click', runTest);

/** Returns the ws: or wss: URL of /ws on the host that served this page. */
function webSocketUrl() {
  const url = new URL('/ws', window.location.href);
  url.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

/** Appends one line to the log panel and returns its element. */
function appendLog(text, className) {
  const line = document.createElement('p');
  line.className = className ? `log-line ${className}` : 'log-line';
  line.textContent = text;
  logPanel.append(line);
  return line;
}

/** Formats a number with one decimal, or two significant digits below 1. */
function formatFigure(value) {
  if (value >= 1 || value === 0) {
    return value.toFixed(1);
  }
  return value.toPrecision(2);
}

/** Formats a number with at most two decimals and no trailing zeros. */
function formatTrimmed(value) {
  return String(Number(value.toFixed(2)));
}

/** Formats a byte count in decimal units, with the binary equivalent in brackets. */
function formatSize(bytes) {
  if (bytes >= BYTES_PER_MB) {
    const mib = formatTrimmed(bytes / BYTES_PER_MIB);
    return `${(bytes / BYTES_PER_MB).toFixed(2)} MB (${mib} MiB)`;
  }
  if (bytes >= BYTES_PER_KB) {
    const kib = formatTrimmed(bytes / BYTES_PER_KIB);
    return `${(bytes / BYTES_PER_KB).toFixed(2)} kB (${kib} KiB)`;
  }
  return bytes === 1 ? '1 byte' : `${bytes} bytes`;
}

/** Returns the rating of an average speed in MB/s: "bad", "plain" or "good". */
function rateSpeed(megabytesPerSecond) {
  if (megabytesPerSecond < BAD_BELOW_MBPS) {
    return 'bad';
  }
  if (megabytesPerSecond > GOOD_ABOVE_MBPS) {
    return 'good';
  }
  return 'plain';
}

/** Opens a WebSocket and resolves with it once open, or rejects if it closes first. */
function openWebSocket(url) {
  return new Promise((resolve, reject) => {
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (error) {
      reject(new Error(`Could not connect to ${url}: ${error.message}`));
      return;
    }
    socket.binaryType = 'arraybuffer';
    socket.addEventListener('open', () => resolve(socket), { once: true });
    // A failed connection fires "error" and then "close". Only "close" carries the code.
    socket.addEventListener(
      'close',
      (event) => {
        const hint = 'Check that the server is running and reachable.';
        reject(new Error(`Could not connect to ${url} (close code ${event.code}). ${hint}`));
      },
      { once: true },
    );
  });
}

/** Describes a close event for the log: its code and, when present, its reason. */
function describeClose(event) {
  const reason = event.reason ? `, reason "${event.reason}"` : '';
  return `close code ${event.code}${reason}`;
}

/**
 * Sends one request message and resolves with the size in bytes of the binary message
 * sent in response and the milliseconds from sending the request to receiving it in full.
 * Rejects if the connection closes, a text message arrives or TRANSFER_TIMEOUT_MS passes.
 */
function requestPayload(socket, label) {
  return new Promise((resolve, reject) => {
    let sentAt = 0;

    const cleanUp = () => {
      clearTimeout(timer);
      socket.removeEventListener('message', onMessage);
      socket.removeEventListener('close', onClose);
    };

    const onMessage = (event) => {
      const receivedAt = performance.now();
      cleanUp();
      if (!(event.data instanceof ArrayBuffer)) {
        reject(new Error(`${label}: expected a binary message but received text.`));
        return;
      }
      resolve({ bytes: event.data.byteLength, milliseconds: receivedAt - sentAt });
    };

    const onClose = (event) => {
      cleanUp();
      reject(new Error(`${label}: connection closed before the payload arrived (${describeClose(event)}).`));
    };

    const timer = setTimeout(() => {
      cleanUp();
      reject(new Error(`${label}: timed out after ${TRANSFER_TIMEOUT_MS / 1000} s waiting for the payload.`));
    }, TRANSFER_TIMEOUT_MS);

    socket.addEventListener('message', onMessage);
    socket.addEventListener('close', onClose);
    sentAt = performance.now();
    socket.send(REQUEST_MESSAGE);
  });
}

/** Logs one finished transfer. The data attributes carry the raw figures for tests. */
function logTransfer(index, transfer) {
  const seconds = transfer.milliseconds / 1000;
  const speed = seconds > 0 ? formatFigure(transfer.bytes / seconds / BYTES_PER_MB) : '∞';
  const text =
    `Transfer ${index}/${TRANSFER_COUNT}: ${formatSize(transfer.bytes)} ` +
    `in ${transfer.milliseconds.toFixed(1)} ms (${speed} MB/s)`;
  const line = appendLog(text, 'transfer');
  line.dataset.transfer = String(index);
  line.dataset.bytes = String(transfer.bytes);
  line.dataset.ms = String(transfer.milliseconds);
}

/** Shows the average speed over all transfers, coloured by its rating. */
function showAverage(transfers) {
  const totalBytes = transfers.reduce((sum, transfer) => sum + transfer.bytes, 0);
  const totalMilliseconds = transfers.reduce((sum, transfer) => sum + transfer.milliseconds, 0);
  // Chromium 156 coarsens performance.now() to 0.1 ms on pages without cross-origin isolation,
  // so a very small payload can add up to a zero total.
  const seconds = Math.max(totalMilliseconds, 0.001) / 1000;
  const megabytesPerSecond = totalBytes / seconds / BYTES_PER_MB;
  const megabitsPerSecond = megabytesPerSecond * 8;
  const rating = rateSpeed(megabytesPerSecond);

  const sameSize = transfers.every((transfer) => transfer.bytes === transfers[0].bytes);
  const sizeText = sameSize
    ? `of ${formatSize(transfers[0].bytes)}`
    : `totalling ${formatSize(totalBytes)}`;

  averageLine.textContent =
    `Average: ${formatFigure(megabytesPerSecond)} MB/s ` +
    `(${formatFigure(megabitsPerSecond)} Mbit/s) ` +
    `over ${transfers.length} transfers ${sizeText}`;
  averageLine.className = `average rating-${rating}`;
  averageLine.dataset.rating = rating;
  averageLine.dataset.bytes = String(totalBytes);
  averageLine.dataset.seconds = String(seconds);
  averageLine.dataset.mbps = String(megabytesPerSecond);
  averageLine.dataset.mbitps = String(megabitsPerSecond);
  averageLine.hidden = false;
}

/** Runs one complete test, reporting every failure in the log. */
async function runTest() {
  if (startButton.disabled) {
    return;
  }
  startButton.disabled = true;
  startButton.textContent = 'Running';
  averageLine.hidden = true;
  logPanel.replaceChildren();

  const url = webSocketUrl();
  let socket = null;
  try {
    appendLog(`Connecting to ${url}`);
    socket = await openWebSocket(url);
    appendLog('Connected.');

    const transfers = [];
    for (let index = 1; index <= TRANSFER_COUNT; index += 1) {
      const transfer = await requestPayload(socket, `Transfer ${index}/${TRANSFER_COUNT}`);
      transfers.push(transfer);
      logTransfer(index, transfer);
    }
    showAverage(transfers);
  } catch (error) {
    appendLog(`Error: ${error.message}`, 'error');
  } finally {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.close(1000, 'test finished');
    }
    // A disabled button loses keyboard focus, so give it back once the test is over.
    const focusWasLost = document.activeElement === document.body || document.activeElement === null;
    startButton.disabled = false;
    startButton.textContent = 'Start';
    if (focusWasLost) {
      startButton.focus();
    }
  }
}
