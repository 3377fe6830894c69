# Two entry points: `make demo` (set up, run the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out

.PHONY: demo test setup bench clean

$(BIN)/symmetry: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/symmetry

demo: setup
	mkdir -p $(OUT)
	$(BIN)/symmetry measure sample_media/astronaut.png --annotate $(OUT)/astronaut_annotated.png
	$(BIN)/symmetry measure sample_media/obama.jpg --annotate $(OUT)/obama_annotated.png
	@echo "Annotated images written to $(OUT)/"

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/photo.py

clean:
	rm -rf $(VENV) $(OUT)
