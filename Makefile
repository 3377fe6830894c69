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

# The web app on the bundled demo patient and cohort, in an SQLite database under
# $(DEMO_HOME) (git-ignored by the .gitignore written into it). The photos are
# measured once (about 0.2 s each, a minute or two); later runs start at once.
DEMO_HOME ?= .symmetry-demo
DEMO_PORT ?= 8501

demo: setup $(DEMO_HOME)/ingested.stamp
	@echo "Starting the app: open http://localhost:$(DEMO_PORT) (Ctrl+C stops it). Nothing is sent over the network."
	SYMMETRY_HOME=$(DEMO_HOME) $(BIN)/streamlit run app.py --server.address localhost \
		--server.port $(DEMO_PORT) --server.headless true --browser.gatherUsageStats false

$(DEMO_HOME)/ingested.stamp: sample_media/manifest.csv | setup
	@mkdir -p $(DEMO_HOME) && printf '*\n' > $(DEMO_HOME)/.gitignore
	@if [ -f $@ ]; then echo "The demo media changed: measuring them again from scratch."; \
		rm -rf $(DEMO_HOME)/symmetry.sqlite3* $(DEMO_HOME)/media $@; fi
	@echo "Measuring the demo photos into $(DEMO_HOME)/ (first run only: $$(($$(wc -l < $<) - 1)) photos, a minute or two)..."
	@SYMMETRY_HOME=$(DEMO_HOME) $(BIN)/symmetry ingest $< --verbose; status=$$?; \
	if [ $$status -eq 0 ]; then touch $@; \
	elif [ $$status -eq 2 ]; then echo "Some photos were skipped (listed above); starting the app with the others."; \
	else exit $$status; fi

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/photo.py

clean:
	rm -rf $(VENV) $(OUT)
