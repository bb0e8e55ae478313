// A small W3C WebDriver client over fetch, enough to drive the real app through
// tauri-driver (which forwards to WebKitWebDriver on Linux).
const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

export class WebDriver {
  constructor(base, sessionId) {
    this.base = base;
    this.sessionId = sessionId;
  }

  static async connect(base, application, timeoutMs = 60000) {
    const started = Date.now();
    for (;;) {
      try {
        const value = await request(base, "POST", "/session", {
          capabilities: { alwaysMatch: { browserName: "wry", "tauri:options": { application } } },
        });
        return new WebDriver(base, value.sessionId);
      } catch (e) {
        if (Date.now() - started > timeoutMs) throw e;
        await sleep(500);
      }
    }
  }

  cmd(method, path, body) {
    return request(this.base, method, `/session/${this.sessionId}${path}`, body);
  }

  async find(css) {
    const value = await this.cmd("POST", "/element", { using: "css selector", value: css });
    return value[ELEMENT];
  }

  async click(css) {
    const id = await this.find(css);
    await this.cmd("POST", `/element/${id}/click`, {});
  }

  /// Runs `fn` (a function's source) in the page with `args` and returns its value.
  execute(fn, ...args) {
    return this.cmd("POST", "/execute/sync", { script: `return (${fn}).apply(null, arguments)`, args });
  }

  /// Resolves with `fn`'s first truthy value, polling until `timeoutMs`.
  async waitFor(what, fn, timeoutMs, ...args) {
    const started = Date.now();
    let last;
    for (;;) {
      last = await this.execute(fn, ...args);
      if (last) return last;
      if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(200);
    }
  }

  async screenshot() {
    return Buffer.from(await this.cmd("GET", "/screenshot"), "base64");
  }

  quit() {
    return request(this.base, "DELETE", `/session/${this.sessionId}`);
  }
}

async function request(base, method, path, body) {
  const response = await fetch(base + path, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok || json.value?.error) {
    throw new Error(`${method} ${path}: ${json.value?.error ?? response.status} ${json.value?.message ?? ""}`);
  }
  return json.value;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
