# The two commands of the README. Both set everything up first (idempotently).
.PHONY: setup demo test lint bench clean-demo package package-smoke

PY := .venv/bin/python
DATA ?= ../shared/data/panos/geovisio-gopromax-2048
PROJECT ?= demo-project
PRESET ?= test

setup:
	bash scripts/setup.sh

# Runs the pipeline on the real GoPro MAX panoramas, then renders the result if there is one.
demo: setup
	$(PY) -m splatstudio run $(DATA) -p $(PROJECT) --preset $(PRESET) --device auto
	$(PY) -m splatstudio status -p $(PROJECT)

test: setup
	bash scripts/test.sh

lint: setup
	$(PY) -m ruff check splatstudio tests benchmarks scripts
	.venv/bin/lint-imports

# Every benchmark (about 40 minutes on 2 cores; COLMAP's panorama pipeline in bench_sfm takes
# most of it). Run one alone for its figure: each writes its own JSON.
bench: setup
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_reproject.py
	$(PY) benchmarks/bench_splat_formats.py
	$(PY) benchmarks/bench_rasterize_cpu.py
	$(PY) benchmarks/bench_sfm.py --set 2048
	$(PY) benchmarks/bench_sfm.py --set full
	$(PY) benchmarks/bench_sfm_cost.py
	$(PY) benchmarks/bench_cpu_threads.py --steps 100
	$(PY) benchmarks/bench_mesh.py
	$(PY) benchmarks/bench_mesh_methods.py
	$(PY) benchmarks/bench_viewer.py

# The self-contained Linux bundle (PyInstaller one-folder, CPU torch): dist/splatstudio/ and
# dist/splatstudio-VERSION-linux-ARCH.tar.gz. About 10 minutes on 2 cores; not part of `make test`.
package: setup
	bash packaging/build.sh

# Its smoke test: --version, doctor, `run --until sfm` and the viewer under Xvfb, from the bundle.
package-smoke:
	$(PY) packaging/smoke_test.py

clean-demo:
	rm -rf $(PROJECT)
