# The two commands of the course (see README.md):
#   make book   build the Jupyter Book into _build/html (creates .venv first if missing)
#   make test   run the whole test suite: unit tests and every notebook under nbval (quick profile)
# Both work offline when FAIRLAB_DATA points at a folder holding MNIST/raw/*.gz and adult/adult.{data,test,names}.
#   make check-book  build, then open every page in headless Chromium with no network (math, figures, dropdowns,
#                    widgets); installs Playwright into the venv, needs a Chromium (tests/check_built_book.py)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch/torchvision pinned to the pair that installs offline on the course machines (Python 3.11, x86_64)
TORCH  ?= torch==2.14.1 torchvision==0.29.1
export MPLBACKEND ?= Agg

.PHONY: book test env clean execute-notebooks benchmark check-book

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test,book]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

env: $(VENV)/.installed

book: env
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "Book built: open _build/html/index.html"

test: env
	FAIRLAB_PROFILE=quick $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env \
	    --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider --durations=20

# Open the built book in headless Chromium with no network (needs Playwright and a Chromium; see the script)
check-book: book
	$(PY) -m pip install -q playwright
	$(PY) tests/check_built_book.py

# Re-execute every chapter in place (the outputs the book shows). FAIRLAB_PROFILE=full on a GPU machine.
execute-notebooks: env
	FAIRLAB_PROFILE=$${FAIRLAB_PROFILE:-full} FAIRLAB_PROGRESS=0 $(PY) notebooks/execute.py $(or $(NOTEBOOKS),notebooks/*.ipynb)

benchmark: env
	$(PY) benchmarks/bench_train.py

clean:
	rm -rf _build
