# edgeloop: `make demo` and `make test` work on a fresh Debian machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: setup sysdeps demo test lint soak bench bench-report model int8 goal-sets task-model task-int8 clean

# System packages: Mesa EGL (and libOpenGL, which PyOpenGL loads) for MuJoCo's offscreen rendering; gcc with
# the libzmq and msgpack-c headers for the C example controller (docs/examples/controller.c) that the tests
# build; Debian's OpenCV, built with GStreamer as JetPack's is, and GStreamer's base plugins for the tests of
# the `gst:` source (pip's OpenCV has none). As root we install what is missing, otherwise we say what to install.
sysdeps:
	@missing=""; \
	if ! ldconfig -p | grep -q 'libEGL.so.1' || ! ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1; then \
	  missing="$$missing libegl1 libegl-mesa0 libgl1-mesa-dri"; fi; \
	ldconfig -p | grep -q 'libOpenGL.so.0' || missing="$$missing libopengl0"; \
	command -v gcc >/dev/null || missing="$$missing gcc libc6-dev"; \
	[ -f /usr/include/zmq.h ] || missing="$$missing libzmq3-dev"; \
	[ -f /usr/include/msgpack.h ] || missing="$$missing libmsgpack-dev"; \
	ls /usr/lib/python3/dist-packages/cv2*.so >/dev/null 2>&1 || missing="$$missing python3-opencv"; \
	ls /usr/lib/*/gstreamer-1.0/libgstvideotestsrc.so >/dev/null 2>&1 || missing="$$missing gstreamer1.0-plugins-base"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing system packages: run 'sudo apt-get install$$missing'"; exit 1; fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[train,sim,dev,bench,tune,observe]"
	touch $(STAMP)

setup: sysdeps $(STAMP)

demo: setup
	$(VENV)/bin/edgeloop demo

test: setup
	$(VENV)/bin/ruff check runtime perception planning calibration tests
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check runtime perception planning calibration tests
	$(VENV)/bin/mypy

# The demo's closed loop for MINUTES (default 30) with goals switching: RSS growth and tick p99 drift, written to
# build/soak.json (docs/reliability.md, Soak). It keeps about one core busy.
MINUTES ?= 30
soak: setup
	$(VENV)/bin/edgeloop bench soak --minutes $(MINUTES) --out build/soak.json

# Every result behind docs/benchmarks.md, written to docs/results/ with its provenance, then the page regenerated
# from them (docs/benchmarks.md, How this page is made). Each command runs on its own, one after another, so
# that plan times are not shared between runs; docs/benchmarks.md says how long the whole set takes.
EL := $(VENV)/bin/edgeloop
R := docs/results
PLANNERS := --planner cem --planner icem --planner mppi --planner predictive_sampling
# The literature's CEM (stable-worldmodel's baselines): 300 samples, top 30, 30 iterations, 5 x 5 steps, 5 executed.
LITERATURE := --set planner.samples=300 --set planner.cem.elites=30 --set planner.iterations=30 \
  --set planner.horizon=5 --set planner.action_block=5 --set planner.execute_steps=5
bench: setup
	$(EL) demo --goals 50 --out $(R)/demo-fp32.json
	$(EL) demo --goals 50 --set model.manifest=models/demo-int8/manifest.json --out $(R)/demo-int8.json
	for k in 25 75; do $(EL) eval --task reach --k $$k $(PLANNERS) --planner pytorch_mppi \
	  --out $(R)/reach-k$$k.json || exit 1; done
	$(EL) eval --task reach --set model.manifest=models/demo-int8/manifest.json --out $(R)/reach-k25-int8.json
	for k in 25 75; do $(EL) eval --task two-room --k $$k $(PLANNERS) --out $(R)/two-room-k$$k.json || exit 1; done
	$(EL) eval --task two-room --goals 50 --oracle --out $(R)/two-room-k25-oracle.json
	$(EL) eval --task two-room $(LITERATURE) --out $(R)/two-room-k25-literature.json
	$(EL) eval --task two-room --set model.manifest=models/two-room-int8/manifest.json \
	  --out $(R)/two-room-k25-int8.json
	for k in 25 75; do $(EL) eval --task push-t --k $$k $(PLANNERS) --out $(R)/push-t-k$$k.json || exit 1; done
	$(EL) eval --task push-t --goals 20 --oracle --out $(R)/push-t-k25-oracle.json
	$(EL) eval --task push-t $(LITERATURE) --out $(R)/push-t-k25-literature.json
	$(EL) eval --task push-t --set model.manifest=models/push-t-int8/manifest.json --out $(R)/push-t-k25-int8.json
	$(EL) eval --task push-t --planner cem --planner pytorch_mppi --set planner.action_block=1 \
	  --set planner.execute_steps=1 --set planner.horizon=5 --out $(R)/push-t-k25-pytorch-mppi.json
	$(EL) eval --task push-t --planner pytorch_mppi --set planner.action_block=1 --set planner.execute_steps=1 \
	  --set planner.horizon=15 --out $(R)/push-t-k25-pytorch-mppi-best.json
	$(EL) eval --task push-t --planner cem --set planner.samples=24 --set planner.cem.elites=4 \
	  --set planner.iterations=4 --out $(R)/push-t-k25-cem-small.json
	$(EL) eval --task push-t --planner cem --set planner.samples=48 --set planner.cem.elites=6 \
	  --set planner.iterations=3 --out $(R)/push-t-k25-cem-48.json
	$(EL) eval --task push-t --planner cem --set planner.samples=48 --set planner.cem.elites=6 \
	  --set planner.iterations=3 --set model.manifest=models/push-t-int8/manifest.json \
	  --out $(R)/push-t-k25-cem-48-int8.json
	for k in 25 75; do $(EL) eval --task arm-push --k $$k $(PLANNERS) --planner pytorch_mppi \
	  --out $(R)/arm-push-k$$k.json || exit 1; done
	$(EL) bench planner --goals 50 --out $(R)/planner-demo.json
	$(EL) bench planner --goals 50 --set planner.iterations=1 --planner cem --planner mppi \
	  --planner predictive_sampling --planner pytorch_mppi --out $(R)/planner-demo-1-iteration.json
	$(EL) bench planner --goals 50 --sweep --out $(R)/planner-sweep.json
	$(EL) bench planner --per-call --out $(R)/planner-per-call.json
	$(EL) bench model --repeats 300 --out $(R)/model-stages.json
	$(EL) bench model --repeats 300 --backend onnxruntime --set model.manifest=models/demo-int8/manifest.json \
	  --out $(R)/model-stages-int8.json
	$(EL) bench link --out $(R)/link.json
	$(EL) bench async --goals 10 --control-cpu 1 $(if $(filter 0,$(shell id -u)),--control-priority 10) \
	  --out $(R)/async.json
	$(EL) bench report

# docs/benchmarks.md again from the stored results alone (seconds).
bench-report: setup
	$(EL) bench report

# Regenerate the shipped demo model, goal images and recorded feed from scratch (4 minutes on 2 quiet cores, 2026-12:
# training 2.5 of them; the model files come out byte for byte as shipped, from any folder (the feed differs in its
# stamps); docs/training.md).
model: setup
	rm -rf build/episodes
	$(VENV)/bin/edgeloop record --out build/episodes --episodes 100 --steps 200 --seed 1
	$(VENV)/bin/edgeloop train --data build/episodes --out models/demo --seed 0 --epochs 6
	$(VENV)/bin/edgeloop goals --out models/demo/goals --count 50 --seed 1000
	$(VENV)/bin/edgeloop record --out data --episodes 1 --steps 200 --seed 7 --name demo_feed

# The INT8 Q/DQ model and its accuracy report (accuracy.md), from the shipped model and recorded feed
# (about 2 minutes; docs/quantization.md).
int8: setup
	$(VENV)/bin/edgeloop quantize models/demo --calibration data/demo_feed.mcap --out models/demo-int8

# The shipped goal sets of every task (data/goals/, a few seconds; docs/tasks.md).
goal-sets: setup
	for task in reach two-room push-t arm-push; do for k in 25 75; do \
	  $(VENV)/bin/edgeloop task goals $$task --k $$k --count 200 --seed 1 || exit 1; done; done

# One task's shipped model from its expert's recordings: make task-model TASK=two-room|push-t|arm-push
# (recording under a minute, training 5-8 minutes on one thread of a 2-core machine; push-t: 900 episodes,
# 4 minutes to record, 50 minutes to train 5 epochs of a 512-wide MLP on 2 threads; reach uses models/demo).
TASK ?= two-room
EPISODES_push-t := 900
EPISODES = $(or $(EPISODES_$(TASK)),100)
TRAINING_push-t := --epochs 5 --set hidden=512 --set threads=2
TRAINING = $(or $(TRAINING_$(TASK)),--epochs 6)
task-model: setup
	rm -rf build/episodes/$(TASK)
	$(VENV)/bin/edgeloop record --task $(TASK) --out build/episodes/$(TASK) --episodes $(EPISODES) --steps 200 --seed 1
	$(VENV)/bin/edgeloop train --data build/episodes/$(TASK) --out models/$(TASK) --seed 0 $(TRAINING) --threads 1 \
	  --scene $(TASK) --task $(TASK)

# A task model's INT8 variant, calibrated on 10 of its expert recordings (run make task-model TASK=... first for
# them; seconds). INT8 has no rollout model: it steps its predictor (docs/quantization.md).
task-int8: setup
	$(VENV)/bin/edgeloop quantize models/$(TASK) --out models/$(TASK)-int8 --no-report \
	  $(foreach i,0 1 2 3 4 5 6 7 8 9,--calibration build/episodes/$(TASK)/episode_00$(i).mcap)

clean:
	rm -rf $(VENV) build runs .pytest_cache .mypy_cache .ruff_cache
