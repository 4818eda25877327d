# mmattn: install / test / demo.  `make help` lists the targets.
#
# WHEELHOUSE: an optional folder of prebuilt wheels (e.g. a stripped mmcv 2.1.0 CPU wheel) handed to
# pip with --find-links on the command line. Never export PIP_FIND_LINKS for this: it would replace
# the machine's pip configuration (which is how the local CPU torch wheel is found) and pip would
# fetch a CUDA torch.
WHEELHOUSE ?=
PYTHON_BOOT ?= python3
# Use the active virtualenv when there is one, else a project-local .venv.
ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := .venv
endif
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := -c requirements/constraints.txt
FIND_LINKS := $(if $(WHEELHOUSE),--find-links $(abspath $(WHEELHOUSE)))
STAMP := $(VENV)/.mmattn-stamps
DEMO_DIR ?= work_dirs/demo
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help install test test-fast test-deploy test-slurm lint docs docs-serve demo demo-seg demo-plug bench clean-demo

help:
	@echo "make install   create $(VENV) (unless a virtualenv is active) and install mmattn with its pinned stack"
	@echo "make test      run the test suite (pytest)"
	@echo "make lint      ruff (pyflakes, pycodestyle) over the repository"
	@echo "make docs      build the docs site strictly (mkdocs --strict) into site/"
	@echo "make test-deploy dynamic-shape ONNX exports (every backbone, RetinaNet, Mask R-CNN, Semantic FPN, UPerNet), torch.compile graphs of every backbone at three dynamic sizes and inductor compiles (slow)"
	@echo "make test-fast the test suite without the tests marked slow (Runner, subprocesses)"
	@echo "make test-slurm tools/slurm_train.sh, slurm_test.sh and a requeued --resume job on a one-node Slurm started on localhost (root or sudo; apt-get installs slurm-wlm + munge if absent)"
	@echo "make demo      synthetic data -> train BiFormer Mask R-CNN on CPU -> CocoMetric, prediction PNGs, loss curve"
	@echo "make demo-seg  the same for BiFormer UPerNet (IoUMetric)"
	@echo "make demo-plug the same for R-50 RetinaNet with neighborhood-attention plugins (CocoMetric)"
	@echo "make bench     backbone latency/memory/GFLOP/s table + plot, then every op vs its anchors (BENCH_ARGS=...)"
	@echo "variables: WHEELHOUSE=<folder of prebuilt wheels, e.g. an mmcv 2.1.0 CPU wheel>"

install: $(STAMP)/mmattn

$(PY):
	@echo "[install] creating virtualenv $(VENV)"
	$(PYTHON_BOOT) -m venv $(VENV)

$(STAMP)/torch: requirements/constraints.txt | $(PY)
	@mkdir -p $(STAMP)
	@echo "[install] 1/5 torch 2.13.0 (CPU wheel)"
	$(PIP) install -q $(CONSTRAINTS) torch==2.13.0
	@touch $@

$(STAMP)/setuptools: $(STAMP)/torch
	@echo "[install] 2/5 setuptools<82 (mmcv's setup.py and mmengine's mmdet::/mmseg:: bases need pkg_resources)"
	$(PIP) install -q $(CONSTRAINTS) "setuptools<82" wheel ninja psutil
	@touch $@

$(STAMP)/mmcv: $(STAMP)/setuptools
	@echo "[install] 3/5 mmcv 2.1.0 with CPU ops$(if $(WHEELHOUSE), (looking for a prebuilt wheel in $(WHEELHOUSE)),)"
	@echo "[install]     if pip finds no prebuilt wheel (cache or --find-links) it COMPILES mmcv:"
	@echo "[install]     about 25 min on 2 free cores, over an hour on busy ones. Pass WHEELHOUSE=<dir> to reuse a wheel."
	MMCV_WITH_OPS=1 MAX_JOBS=2 $(PIP) install $(CONSTRAINTS) $(FIND_LINKS) --no-build-isolation mmcv==2.1.0
	$(PY) -c "import mmcv.ops; from mmcv.ops import nms, RoIAlign; print('[install]     mmcv', mmcv.__version__, 'with compiled ops')"
	@touch $@

$(STAMP)/deps: $(STAMP)/mmcv requirements/runtime.txt requirements/mmpretrain.txt requirements/tests.txt \
		requirements/deploy.txt requirements/docs.txt requirements/lint.txt
	@echo "[install] 4/5 mmengine, mmdet, mmsegmentation, mmpretrain (registry only), pycocotools, test, docs and lint tools, onnx/onnxruntime, openmim"
	$(PIP) install -q $(CONSTRAINTS) -r requirements/runtime.txt -r requirements/tests.txt \
		-r requirements/deploy.txt -r requirements/docs.txt -r requirements/lint.txt openmim
	$(PIP) install -q $(CONSTRAINTS) --no-deps mmpretrain==1.2.0
	$(PIP) install -q $(CONSTRAINTS) einops mat4py modelindex rich importlib-metadata
	@touch $@

# mmattn is installed as a regular package, carrying its configs, tools and model index under
# mmattn/.mim, because openmim 0.3.9 cannot find a PEP 660 editable install (docs/getting_started.md,
# "mim"). The stamp depends on every tracked file it carries, so the next make target reinstalls
# it (5 s) after an edit; `python -m pytest` from the repository root imports the working tree.
MMATTN_FILES := $(shell git ls-files mmattn tools configs model-index.yml 2>/dev/null)
$(STAMP)/mmattn: $(STAMP)/deps setup.py $(MMATTN_FILES)
	@echo "[install] 5/5 mmattn (with its configs, tools and model index for mim)"
	$(PIP) install -q $(CONSTRAINTS) --no-build-isolation --no-deps --force-reinstall .
	@# build leftovers: the installed package has its own copies, and an egg-info left here would
	@# make openmim (pkg_resources) take the working tree for the installed package
	rm -rf mmattn/.mim build mmattn.egg-info
	$(PY) -c "import torch, mmattn; assert torch.__version__.startswith('2.13.0'), torch.__version__; print('[install] done: mmattn', mmattn.__version__, 'torch', torch.__version__)"
	@touch $@

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

docs: install
	$(VENV)/bin/mkdocs build --strict --site-dir site

docs-serve: install
	$(VENV)/bin/mkdocs serve

test-fast: install
	$(PY) -m pytest tests -m 'not slow and not deploy' $(PYTEST_ARGS)

test-deploy: install
	$(PY) -m pytest tests -m deploy $(PYTEST_ARGS)

test-slurm: install
	PYTHON=$(abspath $(PY)) bash tests/slurm/run_local.sh

demo: install
	$(PY) tools/demo.py --task det --work-dir $(DEMO_DIR)

demo-seg: install
	$(PY) tools/demo.py --task seg --work-dir $(DEMO_DIR)

demo-plug: install
	$(PY) tools/demo.py --task plug --work-dir $(DEMO_DIR)

bench: install
	$(PY) tools/analysis/benchmark.py $(BENCH_ARGS)
	$(PY) tools/analysis/benchmark.py --ops all $(BENCH_ARGS)

clean-demo:
	rm -rf $(DEMO_DIR) data/synthetic
