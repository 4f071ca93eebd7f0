// Browser globals that web/measure.js and web/latency.js use, made from Node 20's own
// modules, so that the page's measuring code runs unchanged in Node: fetch with URLs
// relative to the page, XMLHttpRequest with upload progress, WebSocket (from `ws`) and
// window.location. Only the parts those two files call are implemented.

import http from 'node:http';

import WebSocket from 'ws';

// Chromium opens at most 6 HTTP/1.1 connections to one host, and web/settings.js caps the
// page's streams at the same number (MAX_STREAMS).
const CONNECTIONS_PER_HOST = 6;
// Upload bodies are written in chunks of this size. A progress event follows each chunk
// that the kernel has taken, as a browser reports bytes handed to the network stack.
const UPLOAD_CHUNK_BYTES = 64 * 1024;

/**
 * Installs fetch, XMLHttpRequest, WebSocket and window on globalThis, with relative URLs
 * resolved against pageUrl (the address of the page, for example http://10.0.0.1:8080/).
 */
export function installBrowserGlobals(pageUrl) {
  const base = new URL(pageUrl);
  const nodeFetch = globalThis.fetch;
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS_PER_HOST });

  globalThis.window = { location: base };
  globalThis.WebSocket = WebSocket;
  globalThis.fetch = (resource, options) => nodeFetch(new URL(resource, base), options);
  globalThis.XMLHttpRequest = class extends NodeXMLHttpRequest {
    constructor() {
      super(base, agent);
    }
  };
}

// Bodies of the Blobs sent so far: the page reuses one 8 MiB Blob for every upload.
const blobBytes = new WeakMap();

async function bytesOfBlob(blob) {
  let bytes = blobBytes.get(blob);
  if (bytes === undefined) {
    bytes = Buffer.from(await blob.arrayBuffer());
    blobBytes.set(blob, bytes);
  }
  return bytes;
}

/**
 * The subset of XMLHttpRequest that web/measure.js uses for uploads: open(), send(Blob),
 * abort(), responseType 'json', status, response, upload.onprogress, onload, onerror and
 * onabort. Exactly one of onload, onerror and onabort is called per request.
 */
class NodeXMLHttpRequest {
  constructor(base, agent) {
    this.base = base;
    this.agent = agent;
    this.upload = { onprogress: null };
    this.responseType = '';
    this.status = 0;
    this.response = null;
    this.onload = null;
    this.onerror = null;
    this.onabort = null;
    this.request = null;
    this.finished = false;
  }

  open(method, url) {
    this.method = method;
    this.url = new URL(url, this.base);
  }

  finish(handler) {
    if (!this.finished) {
      this.finished = true;
      handler?.();
    }
  }

  abort() {
    this.request?.destroy();
    this.finish(this.onabort);
  }

  send(blob) {
    this.sendBlob(blob).catch(() => this.finish(this.onerror));
  }

  async sendBlob(blob) {
    const body = await bytesOfBlob(blob);
    if (this.finished) {
      return;
    }
    const request = http.request(this.url, {
      method: this.method,
      agent: this.agent,
      headers: { 'Content-Type': blob.type, 'Content-Length': body.length },
    });
    this.request = request;
    request.on('error', () => this.finish(this.onerror));
    request.on('response', (response) => this.readResponse(response));

    let loaded = 0;
    for (let offset = 0; offset < body.length && !this.finished; offset += UPLOAD_CHUNK_BYTES) {
      const chunk = body.subarray(offset, offset + UPLOAD_CHUNK_BYTES);
      const roomLeft = request.write(chunk, (error) => {
        if (!error && !this.finished) {
          loaded += chunk.length;
          this.upload.onprogress?.({ loaded, total: body.length });
        }
      });
      if (!roomLeft) {
        await new Promise((resolve) => {
          const resume = () => {
            request.off('drain', resume);
            request.off('close', resume);
            resolve();
          };
          request.on('drain', resume);
          request.on('close', resume);
        });
      }
    }
    if (!this.finished) {
      request.end();
    }
  }

  readResponse(response) {
    const chunks = [];
    response.on('data', (chunk) => chunks.push(chunk));
    response.on('error', () => this.finish(this.onerror));
    response.on('end', () => {
      this.status = response.statusCode;
      const text = Buffer.concat(chunks).toString('utf8');
      if (this.responseType === 'json') {
        try {
          this.response = JSON.parse(text);
        } catch {
          this.response = null;
        }
      } else {
        this.response = text;
      }
      this.finish(this.onload);
    });
  }
}
