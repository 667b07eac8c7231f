# edgeloop: `make demo` and `make test` work on a fresh Debian machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: setup sysdeps demo test lint model clean

# MuJoCo's offscreen EGL rendering needs Mesa's EGL; as root we install it, otherwise we say what is missing.
sysdeps:
	@if ! ldconfig -p | grep -q 'libEGL.so.1' || ! ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Mesa EGL for offscreen rendering"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null; \
	  else echo "missing Mesa EGL: run 'sudo apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri'"; exit 1; fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[train,sim,dev]"
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

# Regenerate the shipped demo model, goal images and recorded feed from scratch (about 15 minutes on 2 cores).
model: setup
	$(VENV)/bin/edgeloop record --out build/episodes --episodes 60 --steps 200 --seed 1
	$(VENV)/bin/edgeloop train --data build/episodes --out models/demo --seed 0
	$(VENV)/bin/edgeloop goals --out models/demo/goals --count 50 --seed 1000
	$(VENV)/bin/edgeloop record --out data --episodes 1 --steps 200 --seed 7 --name demo_feed

clean:
	rm -rf $(VENV) build runs .pytest_cache .mypy_cache .ruff_cache
