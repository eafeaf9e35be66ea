// test_page.mjs - the page tttd serves at GET /, in headless Chromium (Debian's /usr/bin/chromium
// driven by playwright-core over the DevTools protocol): fill the form, generate, wait for the
// streamed image, check it is a decoded image of the size asked, that progress, a preview and the
// timings were shown, that errors come out readable, and that the API key field works.
//
//   node tests/web/test_page.mjs [TTTD_BIN] [OUT_DIR]        (from the repository root)
//
// Starts its own servers (tests/fixtures/tiny_model, random loopback ports). Writes a screenshot
// to OUT_DIR (default /tmp). Ends with "N passed, N failed"; exits 0 when every check passed, 1
// otherwise.
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BIN = process.argv[2] || process.env.TTTD_BIN || "build/tttd";
const OUT = process.argv[3] || tmpdir();
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"];

let passed = 0;
let failures = 0;
function check(ok, what) {
  console.log((ok ? "ok   " : "FAIL ") + what);
  if (ok) passed++;
  else failures++;
}

// Starts `tttd serve` on port 0 and resolves with its base URL once it says where it listens.
function startServer(extra) {
  const args = ["serve", "--host", "127.0.0.1", "--port", "0",
                "--model", "default=tests/fixtures/tiny_model", ...extra];
  const child = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the server did not start:\n" + log)), 60000);
    const onData = (chunk) => {
      log += chunk;
      const m = log.match(/listening on 127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: "http://127.0.0.1:" + m[1], log: () => log });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => reject(new Error("the server exited (" + code + "):\n" + log)));
  });
}

function stopServer(server) {
  return new Promise((resolve) => {
    if (server.child.exitCode !== null) return resolve(server.child.exitCode);
    server.child.removeAllListeners("exit");
    server.child.on("exit", (code) => resolve(code));
    server.child.kill("SIGTERM");
  });
}

async function fill(page, values) {
  for (const [id, v] of Object.entries(values)) await page.fill("#" + id, String(v));
}

// The main path: 32x48, 4 steps, a preview every 2 steps.
async function testGenerate(page, url) {
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(url + "/");
  check((await page.title()) === "tttd", "GET / serves the page");

  // Record what the page showed while it streamed: previews and every status text it set. A
  // MutationObserver would read the status only when its callback runs, after several fast
  // progress events may have been applied: every assignment is recorded instead.
  await page.evaluate(() => {
    window.seen = { previews: 0, progress: [] };
    new MutationObserver(() => window.seen.previews++)
      .observe(document.getElementById("preview"), { attributes: true, attributeFilter: ["src"] });
    const status = document.getElementById("status");
    const text = Object.getOwnPropertyDescriptor(Node.prototype, "textContent");
    Object.defineProperty(status, "textContent", {
      get() { return text.get.call(this); },
      set(v) { window.seen.progress.push(String(v)); text.set.call(this, v); },
    });
  });
  await fill(page, { prompt: "a lighthouse on a cliff", negative_prompt: "fog", width: 32, height: 48,
                     steps: 4, guidance: 1, seed: 5, n: 1, preview_every: 2 });
  await page.selectOption("#format", "png");
  await page.click("#generate");
  const img = await page.waitForSelector("#out img.result", { timeout: 30000 });
  await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, img, { timeout: 10000 });
  const size = await img.evaluate((el) => [el.naturalWidth, el.naturalHeight]);
  check(size[0] === 32 && size[1] === 48, "the image decodes to 32x48 (got " + size.join("x") + ")");
  const src = await img.getAttribute("src");
  check(src.startsWith("data:image/png;base64,"), "the image is a PNG data URL");

  await page.waitForSelector("#timings:not([hidden])", { timeout: 10000 });
  const t = {};
  for (const k of ["queue_ms", "text_encode_ms", "denoise_ms", "vae_ms", "encode_ms", "total_ms",
                   "batch_size", "seed"]) {
    t[k] = (await page.textContent("#t-" + k).catch(() => null)) || "";
  }
  for (const k of ["queue_ms", "text_encode_ms", "denoise_ms", "vae_ms", "encode_ms", "total_ms"])
    check(/^\d+\.\d ms$/.test(t[k]), "timing " + k + " shown (" + t[k] + ")");
  check(parseFloat(t.total_ms) >= parseFloat(t.denoise_ms), "total >= denoise");
  check(t.seed === "5", "the seed shown is 5 (" + t.seed + ")");
  check(t.batch_size === "1", "batch size 1 (" + t.batch_size + ")");
  check((await page.textContent("#status")) === "done", "status says done");
  const bar = await page.evaluate(() => [document.getElementById("progress").value,
                                         document.getElementById("progress").max]);
  check(bar[0] === 4 && bar[1] === 4, "the progress bar is full at 4/4 (" + bar.join("/") + ")");
  const seen = await page.evaluate(() => window.seen);
  check(seen.progress.some((s) => /^step \d\/4$/.test(s)), "step k/N shown while running");
  check(seen.previews >= 1, "a preview was shown (" + seen.previews + ")");
  check((await page.textContent("#error")) === "", "no error shown");
  check(errors.length === 0, "no script errors" + (errors.length ? ": " + errors.join("; ") : ""));
  mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: join(OUT, "web_page.png"), fullPage: true });
}

// A step count over the server's limit (the form cannot know it): the error JSON's message is
// shown and no image.
async function testError(page, url) {
  await page.goto(url + "/");
  await fill(page, { prompt: "x", width: 32, height: 48, steps: 500, guidance: 1 });
  await page.click("#generate");
  await page.waitForFunction(() => document.getElementById("error").textContent !== "", null,
                             { timeout: 10000 });
  const msg = await page.textContent("#error");
  check(/steps/.test(msg) && /field_range/.test(msg), "a 422 shows its message (" + msg + ")");
  check((await page.$$("#out img.result")).length === 0, "no image after an error");
}

// The form as it loads: size, steps and guidance empty, the served model's defaults shown as
// placeholders (tests/fixtures/tiny_model: 64 x 64, 28 steps, guidance 7), and a request with the
// size left empty draws at the model's size.
async function testModelDefaults(page, url) {
  await page.goto(url + "/");
  await page.waitForFunction(() => document.getElementById("width").placeholder === "64", null,
                             { timeout: 10000 }).catch(() => {});
  const ph = await page.evaluate(() => ["width", "height", "steps", "guidance"].map(
    (id) => [document.getElementById(id).value, document.getElementById(id).placeholder]));
  check(ph.every(([v]) => v === ""), "size, steps and guidance start empty (" + JSON.stringify(ph) + ")");
  check(ph.map(([, p]) => p).join(",") === "64,64,28,7",
        "the model's defaults are the placeholders (" + ph.map(([, p]) => p).join(",") + ")");
  await fill(page, { steps: 2 });
  await page.click("#generate");
  const img = await page.waitForSelector("#out img.result", { timeout: 30000 });
  await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, img, { timeout: 10000 });
  const size = await img.evaluate((el) => [el.naturalWidth, el.naturalHeight]);
  check(size[0] === 64 && size[1] === 64, "an empty size draws at the model's 64x64 (got " + size.join("x") + ")");
}

// With --api-key: without the key a 401 message, with it an image.
async function testApiKey(page, url) {
  await page.goto(url + "/");
  await fill(page, { prompt: "x", width: 32, height: 32, steps: 2, guidance: 1 });
  await page.click("#generate");
  await page.waitForFunction(() => document.getElementById("error").textContent !== "", null,
                             { timeout: 10000 });
  check(/unauthorized/.test(await page.textContent("#error")), "no key: 401 shown");
  await page.fill("#api_key", "web-secret");
  await page.click("#generate");
  const img = await page.waitForSelector("#out img.result", { timeout: 30000 });
  await page.waitForFunction((el) => el.complete && el.naturalWidth === 32, img, { timeout: 10000 });
  check(true, "with the key: the image");
}

async function main() {
  const profile = mkdtempSync(join(tmpdir(), "tttd-chromium-"));
  const servers = [];
  let context = null;
  try {
    const plain = await startServer([]);
    servers.push(plain);
    const keyed = await startServer(["--api-key", "web-secret"]);
    servers.push(keyed);
    // A persistent context is how playwright takes a fresh --user-data-dir.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1000, height: 800 },
    });
    const page = context.pages()[0] || (await context.newPage());
    await testGenerate(page, plain.url);
    await testError(page, plain.url);
    await testModelDefaults(page, plain.url);
    await testApiKey(page, keyed.url);
  } catch (e) {
    check(false, "the test ran to its end: " + (e.stack || e));
    for (const s of servers) console.log(s.log());
  } finally {
    if (context) await context.close();
    for (const s of servers) {
      const code = await stopServer(s);
      check(code === 0, "the server exited 0 on SIGTERM (" + code + ")");
    }
    rmSync(profile, { recursive: true, force: true });
  }
  console.log(passed + " passed, " + failures + " failed");
  process.exit(failures === 0 ? 0 : 1);
}

main();
