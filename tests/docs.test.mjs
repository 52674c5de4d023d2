// The user's manual does not rot: every relative link and #anchor in README.md and docs/
// resolves, and each docs page opens with who it is for. (That every setting the code reads is
// in the configuration reference is checked against the code by core/tests/settings_documented.rs.)
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { ROOT } from "./harness.mjs";

const PAGES = ["README.md", ...fs.readdirSync(path.join(ROOT, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];

/** GitHub's anchor for a heading: lower case, punctuation but - and _ dropped, spaces to -. */
function slug(heading) {
  return heading
    .replace(/`/g, "")
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}_\- ]/gu, "")
    .replace(/ /g, "-");
}

/** The lines of a markdown page outside fenced code blocks. */
function prose(text) {
  let fenced = false;
  return text.split("\n").filter((line) => {
    if (line.startsWith("```")) {
      fenced = !fenced;
      return false;
    }
    return !fenced;
  });
}

/** The anchors a page's headings make, repeated ones numbered as GitHub numbers them. */
function anchors(text) {
  const seen = new Map();
  const out = new Set();
  for (const line of prose(text)) {
    const m = line.match(/^#{1,6} +(.*?) *#*$/);
    if (!m) continue;
    const s = slug(m[1]);
    const n = seen.get(s) ?? 0;
    seen.set(s, n + 1);
    out.add(n === 0 ? s : `${s}-${n}`);
  }
  return out;
}

/** Every inline link's target in a page's prose (inline code spans left out). */
function links(text) {
  const out = [];
  for (const line of prose(text)) {
    const plain = line.replace(/`[^`]*`/g, "``");
    for (const m of plain.matchAll(/\]\(([^)\s]+)\)/g)) out.push(m[1]);
  }
  return out;
}

test("every relative link and #anchor in README.md and docs/ resolves", () => {
  const texts = new Map(PAGES.map((p) => [p, fs.readFileSync(path.join(ROOT, p), "utf8")]));
  const broken = [];
  let checked = 0;
  for (const [page, text] of texts) {
    for (const target of links(text)) {
      if (/^[a-z]+:/i.test(target)) continue; // http:, https:, mailto:
      checked++;
      const [file, anchor] = target.split("#");
      const resolved = file ? path.normalize(path.join(path.dirname(page), file)) : page;
      if (!fs.existsSync(path.join(ROOT, resolved))) {
        broken.push(`${page}: ${target} (no file ${resolved})`);
        continue;
      }
      if (anchor === undefined) continue;
      if (!resolved.endsWith(".md")) {
        broken.push(`${page}: ${target} (an anchor into a file that is not markdown)`);
        continue;
      }
      const into = texts.get(resolved) ?? fs.readFileSync(path.join(ROOT, resolved), "utf8");
      if (!anchors(into).has(anchor)) broken.push(`${page}: ${target} (no heading makes #${anchor} in ${resolved})`);
    }
  }
  assert.deepEqual(broken, []);
  assert.ok(checked > 50, `only ${checked} links checked`);
});

test("the checker itself: slugs as GitHub makes them, broken targets found", () => {
  assert.equal(slug("`POST /v1/chat/completions`"), "post-v1chatcompletions");
  assert.equal(slug("Outlier ejection (the green breaker)"), "outlier-ejection-the-green-breaker");
  assert.equal(slug("Bodies: what the largest and worst request bodies cost"), "bodies-what-the-largest-and-worst-request-bodies-cost");
  const page = "# A\n\n## B c\n\n## B c\n\n```\n## not a heading\n```\n";
  assert.deepEqual([...anchors(page)], ["a", "b-c", "b-c-1"]);
  assert.deepEqual(links("see [x](y.md#z), `[not](a link)` and [web](https://e.x)"), ["y.md#z", "https://e.x"]);
});

test("the README is short and each docs page opens with who it is for", () => {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  assert.ok(readme.split("\n").length <= 250, `README.md has ${readme.split("\n").length} lines`);
  const docs = PAGES.filter((p) => p.startsWith("docs/"));
  assert.ok(docs.length >= 6, docs.join(", "));
  for (const page of docs) {
    const lines = fs.readFileSync(path.join(ROOT, page), "utf8").split("\n");
    assert.match(lines[0], /^# /, page);
    assert.match(lines[2], /^\*For /, `${page} opens with who it is for`);
    assert.ok(readme.includes(`(${page})`), `README.md links ${page}`);
  }
});
