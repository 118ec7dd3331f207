# A thin wrapper: dependencies, then CMake. `make run` and `make test` are
# the two commands README.md opens with.
BUILD ?= build
JOBS ?= 2

.PHONY: deps build test run format clean

deps:
	@./.ci/install-deps

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

run: build
	./$(BUILD)/onearm serve examples/reels/app.lua

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)
