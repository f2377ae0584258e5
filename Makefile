# GeoStudio for QGIS. The two commands of the README: `make demo` and `make test`.
# Both install what is missing first: QGIS from apt, the test venv, the engine environment.
SHELL := /bin/bash
QGIS_PY ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := PYTHONPATH=$(CURDIR) $(QGIS_PY) -m geostudio_plugin.engine_runtime

.PHONY: demo test test-qgis test-engine test-roots deps engine package run screenshot bench lock clean
# The QGIS versions `make test` proves the plugin on: the machine's own QGIS where it is one of them,
# the others in Debian roots built by scripts/qgis-root (bookworm 3.22, trixie 3.40 LTR, sid newest 3.x).
QGIS_VERSIONS := 3.22 3.40 3.44

demo: deps engine
	$(PY) scripts/demo.py

test: deps engine
	$(MAKE) --no-print-directory test-engine test-roots
	$(QGIS_PY) scripts/qgis_matrix.py $(QGIS_VERSIONS)

test-engine: engine
	ENGINE_PY=$$($(RUNTIME) python) && PYTHONPATH=$(CURDIR) HF_HUB_OFFLINE=1 \
		$$ENGINE_PY -m pytest tests/engine -q -p no:cacheprovider

# The QGIS suite on the machine's own QGIS only (quick; make test runs every version).
test-qgis: deps engine
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest tests/qgis -q -p no:cacheprovider --qgis_disable_gui

# The QGIS suite on one version: make test-qgis-3.40 (builds its root on first use).
test-qgis-%: deps engine
	$(QGIS_PY) scripts/qgis_matrix.py $*

# scripts/qgis-root itself: a killed run leaves no mount and no process; a mounted root is never deleted.
test-roots: deps engine
	scripts/qgis-root build 3.40 >/dev/null
	$(PY) -m pytest tests/roots -q -p no:cacheprovider -p no:pytest_qgis

deps: $(VENV)/.ready

$(VENV)/.ready: tests/requirements-qgis.txt scripts/bootstrap-qgis
	scripts/bootstrap-qgis
	rm -rf $(VENV)
	$(QGIS_PY) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r tests/requirements-qgis.txt
	touch $@

engine:
	@$(RUNTIME) ensure >/dev/null

package:
	$(QGIS_PY) scripts/package.py

run: deps package
	$(PY) scripts/run_qgis.py

screenshot: deps engine package
	$(PY) scripts/screenshot.py

bench: deps engine
	ENGINE_PY=$$($(RUNTIME) python) && PYTHONPATH=$(CURDIR) HF_HUB_OFFLINE=1 $$ENGINE_PY bench/run_all.py

lock:
	scripts/lock-engine

clean:
	rm -rf $(VENV) dist build demo-output
