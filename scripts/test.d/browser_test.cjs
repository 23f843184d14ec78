// Drives the web chat page served by `mote serve` (SmolLM2) in headless Chromium.
// Usage: node browser_test.cjs PORT SCREENSHOT. Prints one line per check and a closing
// 'N passed, N failed' line; exits 1 if any check failed.
"use strict";
const path = require("path");
const { chromium } = require(path.join(process.env.PLAYWRIGHT_DIR, "node_modules", "playwright-core"));

const [port, screenshot] = process.argv.slice(2);
const base = `http://127.0.0.1:${port}`;
let passed = 0, failed = 0;

function check(name, ok, detail) {
  if (ok) { passed++; console.log(`ok   ${name}`); }
  else { failed++; console.log(`FAIL ${name}${detail ? ": " + detail : ""}`); }
}

async function metric(name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  return line ? Number(line.split(" ")[1]) : NaN;
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    const bodies = [];
    page.on("request", (r) => { if (r.url().endsWith("/v1/chat/completions")) bodies.push(r.postDataJSON()); });

    await page.goto(base + "/");
    await page.waitForFunction(() => document.getElementById("model").textContent.length > 0, null, { timeout: 10000 });
    const served = (await (await fetch(`${base}/v1/models`)).json()).data[0].id;
    check("page shows the model name", (await page.textContent("#model")) === served);

    // Turn 1: a long answer, stopped while it streams.
    await page.click("#settings summary");
    await page.fill("#max_tokens", "3500");
    await page.fill("#input", "Tell me a very long story.");
    await page.click("#send");
    const bubble = page.locator(".msg.assistant").first();
    await page.waitForFunction(() => {
      const b = document.querySelector(".msg.assistant");
      return b && b.textContent.length > 0;
    }, null, { timeout: 20000 });
    const lengths = [];
    for (let i = 0; i < 6; i++) {
      lengths.push((await bubble.textContent()).length);
      await page.waitForTimeout(150);
    }
    const growing = lengths.every((l, i) => i === 0 || l >= lengths[i - 1]) && lengths[lengths.length - 1] > lengths[0];
    check("tokens appear one after another", growing, JSON.stringify(lengths));
    check("stop is enabled while streaming", await page.isEnabled("#stop"));
    const cancelledBefore = await metric("mote_cancelled_total");
    await page.click("#stop");
    await page.waitForFunction(() => document.querySelector(".msg.assistant").dataset.state === "done", null, { timeout: 5000 });
    check("stop marks the answer stopped", (await bubble.getAttribute("data-stopped")) === "true");
    const stoppedLen = (await bubble.textContent()).length;
    await page.waitForTimeout(400);
    check("no text arrives after stop", (await bubble.textContent()).length === stoppedLen);
    let cancelled = NaN;
    // The server notices the disconnect at its next write; allow for a busy machine.
    for (let i = 0; i < 150; i++) {
      cancelled = await metric("mote_cancelled_total");
      if (cancelled > cancelledBefore) break;
      await page.waitForTimeout(100);
    }
    check("the server cancelled the generation", cancelled > cancelledBefore, `${cancelledBefore} -> ${cancelled}`);
    check("send is enabled again", (await page.isEnabled("#send")) && !(await page.isEnabled("#stop")));
    check("tokens per second shown", /tok\/s/.test(await page.textContent("#stats")), await page.textContent("#stats"));

    // Turn 2: short; the request carries the history.
    await page.fill("#max_tokens", "8");
    await page.fill("#input", "And then?");
    await page.click("#send");
    await page.waitForFunction(() => {
      const all = document.querySelectorAll(".msg.assistant");
      return all.length === 2 && all[1].dataset.state === "done";
    }, null, { timeout: 20000 });
    const last = bodies[bodies.length - 1] || { messages: [] };
    const roles = last.messages.map((m) => m.role).join(",");
    check("second turn sends the history", roles === "user,assistant,user", roles);
    check("request streams with usage", last.stream === true && last.stream_options && last.stream_options.include_usage === true);

    // Markdown rendering never lets model text become markup.
    const html = await page.evaluate(() => renderMarkdown("<img src=x onerror=alert(1)> **bold** `code`\n```\n<b>x</b>\n```"));
    check("markdown escapes html", !html.includes("<img") && html.includes("&lt;img") && html.includes("&lt;b&gt;"), html);
    check("markdown renders a subset", html.includes("<strong>bold</strong>") && html.includes("<code>code</code>") && html.includes("<pre>"), html);
    check("no page errors", pageErrors.length === 0, pageErrors.join("; "));

    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`screenshot: ${screenshot}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${e.stack || e}`);
  } finally {
    await browser.close();
  }
  console.log(`browser: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
