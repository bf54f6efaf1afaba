# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
GEN := $(BIN)/gen
DEMO_ITERS ?= 600

.PHONY: install demo test lint bench bench-quality bench-quality-seeds bench-quality-ablations bench-quality-long clean-demo

install: $(VENV)/.installed

# Pinned torch (CPU wheel where the machine's pip offers one); see pyproject.toml.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The main job end to end on the embedded defaults: phantom data -> cpu-preset GAN -> samples.
# Each step is skipped when its result exists, so `make demo` can be run again safely.
demo: install
	@test -d data/phantoms || $(GEN) demo-data --out data/phantoms
	@test -d data/phantoms-held-out || $(GEN) demo-data --out data/phantoms-held-out --per-class 50 --seed 1
	@if [ ! -f runs/demo/checkpoint-$$(printf %07d $(DEMO_ITERS)).pt ]; then \
	  if ls runs/demo/checkpoint-*.pt >/dev/null 2>&1; then \
	    $(GEN) train --out runs/demo --iters $(DEMO_ITERS) --resume; \
	  else \
	    $(GEN) train --data data/phantoms --out runs/demo --preset cpu --batch-size 16 --iters $(DEMO_ITERS) --checkpoint-every 200; \
	  fi; \
	fi
	@$(GEN) sample --checkpoint runs/demo --n 25 --all-classes --out samples/demo --quiet
	@test -f reports/demo/report.json || $(GEN) report --real data/phantoms-held-out --n 50 --out reports/demo --quiet
	@test -d exports/demo || $(GEN) export --out exports/demo --report reports/demo --license CC0-1.0 --sql-dump
	@$(GEN) verify exports/demo
	@echo
	@echo "Demo done:"
	@echo "  trained cpu model    runs/demo/ (progress grid: runs/demo/grid-$$(printf %07d $(DEMO_ITERS)).png)"
	@echo "  labelled samples     samples/demo/<class>/*.png"
	@echo "  quality report       reports/demo/report.md (held-out phantoms: data/phantoms-held-out)"
	@echo "  verified data set    exports/demo/ (README.md, index.html; check it again: $(GEN) verify exports/demo)"
	@echo "  provenance database  gen.db   (try: $(GEN) models list)"

# The browser test needs Debian's chromium: installed here when missing (as root). Outside CI a
# failed install only makes that one test skip; in CI it fails.
test: install
	@sh tests/install_chromium.sh || [ -z "$$CI" ]
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python -m bench

# The chosen recipe (cpu) against the reference: 20 training minutes, 3 seeds, mean and std, the
# curated set beside the plain one; the ablation table (each lever alone on cpu, 10 minutes, seed
# 0); then one 60-minute run of the recipe with its curve. About 7 h on 2 cores; each part alone:
# make bench-quality-seeds, bench-quality-ablations, bench-quality-long. The baselines: python -m
# bench.quality --models ... (docs/benchmarks.md).
QUALITY_SEEDS ?= 0 1 2
QUALITY_ABLATIONS ?= cpu,reference,colour=cpu:diffaugment=color+translation,\
colour30=cpu:diffaugment=color@0.3+translation,ada=cpu:diffaugment=color+translation:ada_target=0.6,\
cutout=cpu:diffaugment=translation+cutout,lecam=cpu:lecam=0.3,transition=cpu:transition=[0+300],\
balanced=cpu:balanced_batches=true,classhead=cpu:classifier_weight=0.5,\
fastgan=cpu:g.skip_excitation=true:reconstruction_weight=1,mbstd=cpu:minibatch_std=4,\
modeseeking=cpu:mode_seeking=1,rare=cpu:oversample_rare=1,rarefade=cpu:oversample_rare=1:oversample_rare_fade=1000,\
colourcond=cpu:colour_condition=1,colourproj=cpu:d.colour_projection=true,\
stemlabel=cpu:g.stem_label=true:colour_condition=1:d.colour_projection=true,histmatch=cpu:histogram_matching=50,tanh=cpu:g.output=tanh,zeropad=cpu:padding=zeros,ema0=cpu:ema_decay=0
bench-quality: bench-quality-seeds bench-quality-ablations bench-quality-long

bench-quality-seeds: install
	for seed in $(QUALITY_SEEDS); do \
	  $(BIN)/python -m bench.quality --models cpu,reference --minutes 20 --eval-points 1 --utility-seeds 1 \
	    --curated 0.5 --seed $$seed --results bench/results/seed-$$seed --figures bench/results/seed-$$seed \
	    || exit 1; \
	done
	$(BIN)/python -m bench.quality_seeds $(foreach seed,$(QUALITY_SEEDS),bench/results/seed-$(seed)/quality-*.json)

bench-quality-ablations: install
	$(BIN)/python -m bench.quality --models "$(QUALITY_ABLATIONS)" --minutes 10 --eval-points 1 \
	  --utility-seeds 1 --seed 0 --results bench/results/ablations --figures bench/results/ablations

bench-quality-long: install
	$(BIN)/python -m bench.quality --models cpu --minutes 60 --eval-points 6 --curated 0.5 \
	  --results bench/results/long --figures bench/results/long

clean-demo:
	rm -rf data/phantoms data/phantoms-held-out runs/demo samples/demo reports/demo exports/demo gen.db gen.db-wal gen.db-shm
