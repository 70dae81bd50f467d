# One command sets up and renders the demo; one sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_OUT ?= demo/gigacanvas-demo.png

.PHONY: demo test install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: this release is a CPU build here; an unpinned torch pulls a CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	# --upscaler's spandrel without its dependencies: they name torchvision, and no torchvision on PyPI
	# imports beside this CPU torch 2.13.0 (einops, its one other need, is in gigacanvas's own list).
	# gigacanvas imports spandrel without torchvision (actors/spandrelshim.py). CI installs this too.
	$(PIP) install -q --no-deps 'spandrel==0.4.2'
	touch $@

install: $(VENV)/.installed

demo: install
	mkdir -p $(dir $(DEMO_OUT))
	$(VENV)/bin/gigacanvas render --prompt "a lighthouse on a cliff at dawn, poster" \
		--negative-prompt "blurry" --width 1024 --height 512 --steps 4 --guidance 4.5 --seed 7 \
		--out $(DEMO_OUT) --overwrite
	@echo "demo picture: $(DEMO_OUT) (the tiny model's random weights make it look like noise)"

# Two xdist workers, a test file to each at a time, in collection order (tests/conftest.py puts the
# minutes-long multinode file first): a render's actors import torch and diffusers one after the
# other, so one run alone leaves much of CI's two cores idle. Each worker has its own Ray session.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) demo .pytest_cache
