# temtwin: two set-up commands on a fresh machine
#   make demo   create .venv, install temtwin, run the workflow on the embedded demo dataset
#   make test   create .venv if needed, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.temtwin-installed
CORES  ?= $(shell nproc 2>/dev/null || echo 2)
PYTEST_ARGS ?=

.PHONY: venv demo test bench lint report clean-results

$(STAMP): pyproject.toml
	@free_kb=$$(df -Pk . | awk 'NR==2 {print $$4}'); if [ -n "$$free_kb" ] && [ "$$free_kb" -lt 8000000 ] && [ ! -d $(VENV)/lib ]; then \
	  echo "WARNING: $$((free_kb / 1048576)) GB free on $(CURDIR); the venv needs about 7.5 GB (torch's CUDA wheels come with the pinned torch==2.14.1): free some disk if pip fails with 'No space left on device'" >&2; fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-cache-dir -e '.[test,lint]'
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/snakemake --cores $(CORES) --config dataset=resources/demo results=results
	$(BIN)/snakemake --cores 1 --config dataset=resources/demo results=results --report report.html
	@echo ""
	@echo "temtwin demo finished."
	@echo "  results: $(CURDIR)/results/<sample>/...  (summary: results/summary.tsv, results/*/summary.json)"
	@echo "  report:  $(CURDIR)/report.html"

test: venv
	@set +e; PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): the suite is missing" >&2; exit 1; fi; \
	exit $$rc

bench: venv
	@for f in bench/bench_*.py; do echo "== $$f"; PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python $$f || exit 1; done
	$(BIN)/python bench/collect.py

lint: venv
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/snakemake --lint --cores 1 --config dataset=resources/demo

report: venv
	$(BIN)/snakemake --cores 1 --report report.html

clean-results:
	rm -rf results report.html .snakemake
