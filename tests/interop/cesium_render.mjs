// Render a 3D Tiles tileset in CesiumJS (npm `cesium`) in headless Chromium (SwiftShader WebGL),
// driven by puppeteer-core, and report what Cesium computed.
//
//   node cesium_render.mjs <job.json>
//
// job.json: {"tileset_dir": folder holding tileset.json, "screenshot": png path,
//            "camera": {"lon", "lat", "height", "heading", "pitch"} (degrees, metres),
//            "probes": [[e, n, u], ...] ENU metres about "origin" {"lat", "lon", "h"},
//            "width", "height", "timeout_s", "chromium"}
// Prints one JSON line: {"ok", "tiles_selected", "tiles_loaded", "root_cartographic":
// {"lon", "lat", "h"}, "probes_px": [[x, y] | null, ...], "errors": [...], "seconds"}.
// The page hides the globe, sky and atmosphere and clears to pure magenta, so any pixel
// that is not magenta was drawn by the tileset.
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const nodeRoot = process.env.SPLATSTUDIO_NODE_DIR || path.join(here, "..", "..", ".node");
const require = createRequire(path.join(nodeRoot, "package.json"));
const puppeteer = require("puppeteer-core");
const cesiumBuild = path.join(path.dirname(require.resolve("cesium/package.json")), "Build", "Cesium");

const page_html = `<!doctype html><html><head><meta charset="utf-8">
<script src="/cesium/Cesium.js"></script>
<link href="/cesium/Widgets/widgets.css" rel="stylesheet">
<style>html,body,#c{margin:0;width:100%;height:100%;overflow:hidden;background:#f0f}</style>
</head><body><div id="c"></div></body></html>`;

const types = { ".js": "text/javascript", ".json": "application/json", ".glb": "model/gltf-binary",
  ".wasm": "application/wasm", ".css": "text/css", ".html": "text/html", ".png": "image/png" };
const server = http.createServer((req, res) => {
  const url = decodeURIComponent(new URL(req.url, "http://x").pathname);
  let file = null;
  if (url === "/" || url === "/index.html") {
    res.writeHead(200, { "Content-Type": "text/html" });
    return res.end(page_html);
  }
  if (url.startsWith("/cesium/")) file = path.join(cesiumBuild, url.slice(8));
  else if (url.startsWith("/tiles/")) file = path.join(job.tileset_dir, url.slice(7));
  if (!file || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
    res.writeHead(404);
    return res.end();
  }
  res.writeHead(200, { "Content-Type": types[path.extname(file)] || "application/octet-stream" });
  fs.createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const port = server.address().port;

const t0 = Date.now();
const width = job.width || 800, height = job.height || 600;
const browser = await puppeteer.launch({
  executablePath: job.chromium || "/usr/bin/chromium",
  headless: true,
  args: ["--headless=new", "--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist", "--disable-dev-shm-usage",
    `--window-size=${width},${height}`],
});
let result;
try {
  const page = await browser.newPage();
  await page.setViewport({ width, height });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(`http://127.0.0.1:${port}/`, { waitUntil: "load" });
  result = await page.evaluate(async (job) => {
    const C = window.Cesium;
    C.Ion.defaultAccessToken = "";
    const viewer = new C.Viewer("c", {
      baseLayer: false, geocoder: false, baseLayerPicker: false, timeline: false, animation: false,
      homeButton: false, sceneModePicker: false, navigationHelpButton: false, infoBox: false,
      selectionIndicator: false, fullscreenButton: false,
      terrainProvider: new C.EllipsoidTerrainProvider(),
      contextOptions: { webgl: { preserveDrawingBuffer: true } },
    });
    const scene = viewer.scene;
    scene.globe.show = false;
    if (scene.skyBox) scene.skyBox.show = false;
    if (scene.skyAtmosphere) scene.skyAtmosphere.show = false;
    if (scene.sun) scene.sun.show = false;
    if (scene.moon) scene.moon.show = false;
    scene.backgroundColor = new C.Color(1, 0, 1, 1);
    viewer.cesiumWidget.creditContainer.style.display = "none";
    const failures = [];
    const tileset = await C.Cesium3DTileset.fromUrl("/tiles/tileset.json", { maximumScreenSpaceError: 1 });
    tileset.tileFailed.addEventListener((e) => failures.push(`${e.url}: ${e.message}`));
    scene.primitives.add(tileset);
    const cam = job.camera;
    viewer.camera.setView({
      destination: C.Cartesian3.fromDegrees(cam.lon, cam.lat, cam.height),
      orientation: { heading: C.Math.toRadians(cam.heading), pitch: C.Math.toRadians(cam.pitch), roll: 0 },
    });
    // Readiness: tiles selected, each selected tile's content ready, tilesLoaded for 10 frames.
    const deadline = performance.now() + 1000 * (job.timeout_s || 90);
    let stable = 0, frames = 0;
    await new Promise((resolve) => {
      const off = scene.postRender.addEventListener(() => {
        frames++;
        const sel = tileset._selectedTiles || [];
        const ready = sel.length > 0 && sel.every((t) => t.contentReady) && tileset.tilesLoaded;
        stable = ready ? stable + 1 : 0;
        if (stable >= 10 || failures.length || performance.now() > deadline) { off(); resolve(); }
      });
      scene.requestRenderMode = false;
    });
    const origin = C.Cartesian3.fromDegrees(job.origin.lon, job.origin.lat, job.origin.h);
    const enu = C.Transforms.eastNorthUpToFixedFrame(origin);
    const probes = job.probes.map(([e, n, u]) => {
      const p = C.Matrix4.multiplyByPoint(enu, new C.Cartesian3(e, n, u), new C.Cartesian3());
      const w = C.SceneTransforms.worldToWindowCoordinates(scene, p);
      return w ? [w.x, w.y] : null;
    });
    const rootT = tileset.root.computedTransform;
    const rc = C.Cartographic.fromCartesian(C.Matrix4.getTranslation(rootT, new C.Cartesian3()));
    const sel = tileset._selectedTiles || [];
    return {
      tiles_selected: sel.length,
      selected: sel.map((t) => t.content ? t.content.url : null),
      tiles_loaded: tileset.tilesLoaded,
      frames,
      failures,
      root_cartographic: { lon: C.Math.toDegrees(rc.longitude), lat: C.Math.toDegrees(rc.latitude), h: rc.height },
      probes_px: probes,
      canvas: [scene.canvas.width, scene.canvas.height],
    };
  }, job);
  const canvas = await page.$("canvas");
  await canvas.screenshot({ path: job.screenshot });
  result.errors = errors;
  result.ok = result.failures.length === 0 && result.tiles_selected > 0;
} catch (e) {
  result = { ok: false, errors: [String(e && e.stack || e)] };
} finally {
  await browser.close();
  server.close();
}
result.seconds = (Date.now() - t0) / 1000;
console.log(JSON.stringify(result));
