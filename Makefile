# Two entry points for a fresh machine (see README):
#   make demo   -- set up .venv and run every notebook headless into runs/demo
#   make test   -- set up .venv and run the test suite
#   make site   -- the course site in site/: executed notebooks (SITE_RUN, reused when it
#                  already holds them), the docs and the benchmark tables (MkDocs)
#
# TORCH selects the torch requirement. Without an NVIDIA driver it pins the CPU build that
# installs quickly (torch==2.13.0, with the matching torchvision for Topaz); with one, the
# normal (CUDA) build. Override freely: make demo TORCH="torch==2.13.0" TORCHVISION=...
# EXTRAS=test,peers installs the peers the tests and benchmarks compare against.
PYTHON ?= python3
VENV ?= .venv
GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)
TORCH ?= $(if $(GPU),torch,torch==2.13.0)
TORCHVISION ?= $(if $(GPU),torchvision,torchvision==0.28.*)
EXTRAS ?= test,peers
RUN ?= runs/demo
PRESET ?= ci
PYTEST_ARGS ?=
SITE_RUN ?= runs/site

BIN := $(VENV)/bin

.PHONY: demo test setup lab site clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" "$(TORCHVISION)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]" "$(TORCH)" "$(TORCHVISION)"
	touch $@

demo: setup
	$(BIN)/cryodiff notebooks --preset $(PRESET) --out $(RUN)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lab: setup
	$(BIN)/python -m pip install -q -e ".[lab]"
	$(BIN)/jupyter lab notebooks/

site: setup
	$(BIN)/python -m pip install -q -e ".[site]"
	ls $(SITE_RUN)/executed/[0-9][0-9]_*.ipynb >/dev/null 2>&1 || \
		$(BIN)/cryodiff notebooks --preset ci --out $(SITE_RUN)
	$(BIN)/python -m cryodiff.course.site $(SITE_RUN)/executed build/site-src
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build -q -f mkdocs.yml

clean:
	rm -rf $(VENV) runs .pytest_cache build/site-src site
