# packer - build, test, install. See README.md.
#
#   make             libpacker (static + shared), the packer CLI, the Lua module
#   make demo        install missing deps, build, run packer on examples/demo
#   make test        busted specs + C tests; ends with "N passed, N failed"
#   make test-sanitize   the same under ASan+UBSan, threaded tests under TSan
#   make bench       benchmarks (not tests); figures go in README
#   make install PREFIX=/usr/local

CC      ?= cc
PREFIX  ?= /usr/local
BUILD   ?= build
PKGS     = lua5.4 libcjson libxxhash
DEPS_OK := $(shell pkg-config --exists $(PKGS) readline 2>/dev/null && echo yes)

OPT     ?= -O2 -g
SAN     ?=
CFLAGS  += -std=c11 -Wall -Wextra -Werror -fPIC $(OPT) $(SAN) -pthread \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
           -DPACKER_SRC_LUA_DIR='"$(CURDIR)/lua"'
LDFLAGS += $(SAN) -pthread
LUALIB   = $(shell pkg-config --libs lua5.4 2>/dev/null)
# the Lua module takes Lua from the interpreter that loads it: LIBS_NOLUA
LIBS_NOLUA = $(shell pkg-config --libs libcjson libxxhash 2>/dev/null)
LIBS     = $(LIBS_NOLUA) $(LUALIB)
RLLIB    = $(shell pkg-config --libs readline 2>/dev/null || echo -lreadline)

LIB_SRC  = alloc error fsio json hash workspace manifest snapshot store lane bus \
           response project api registry reads sandbox recipes strmap cache pool build build_out \
           pack pack_reader scan doctor doctor_ctx doctor_ws fix quarantine observe
# background observation (issue 6): the observer's parts and the stale set
LIB_SRC += fresh obs_walk obs_batch obs_own
# cancellation tokens (packer_cancel_*; packer serve's $/cancelRequest)
LIB_SRC += cancel
LIB_OBJ  = $(LIB_SRC:%=$(BUILD)/obj/%.o) $(BUILD)/obj/builtin_recipes.o \
           $(BUILD)/obj/builtin_rules.o
CLI_OBJ  = $(BUILD)/obj/cli.o $(BUILD)/obj/cli_print.o $(BUILD)/obj/cli_repl.o \
           $(BUILD)/obj/lua_packer.o $(BUILD)/obj/cli_pack.o
# packer serve: JSON-RPC over stdin/stdout (serve.c) and its framing (rpc.c)
CLI_OBJ += $(BUILD)/obj/serve.o $(BUILD)/obj/serve_methods.o $(BUILD)/obj/rpc.o
CLI_OBJ += $(BUILD)/obj/cli_watch.o
C_TESTS  = $(patsubst spec/c/%.c,$(BUILD)/tests/%,$(wildcard spec/c/test_*.c))
EXAMPLES = $(BUILD)/examples/host
EXAMPLES += $(BUILD)/examples/serve-client

SOVERSION = 0
TARGETS  = $(BUILD)/libpacker.a $(BUILD)/libpacker.so $(BUILD)/packer $(BUILD)/lua/packer.so

.PHONY: all deps demo test test-sanitize bench install clean fuzz
all: $(TARGETS) $(EXAMPLES)

deps:
	@sh scripts/deps.sh

V ?= 0
Q := $(if $(filter 1,$(V)),,@)

$(BUILD)/obj/%.o: src/%.c src/internal.h src/packer.h src/cli.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/pack.o $(BUILD)/obj/pack_reader.o $(BUILD)/obj/cli_pack.o: src/pack_reader.h
$(BUILD)/obj/build.o $(BUILD)/obj/build_out.o: src/build.h
$(BUILD)/obj/serve.o $(BUILD)/obj/serve_methods.o $(BUILD)/obj/rpc.o: src/rpc.h src/serve.h

# Built-in recipes travel inside the library (lua/recipes is their source).
$(BUILD)/gen/builtin_recipes.c: $(wildcard lua/recipes/*.lua) scripts/embed-lua.lua
	@mkdir -p $(dir $@)
	$(Q)lua5.4 scripts/embed-lua.lua $@ packer_builtin_recipes $(sort $(wildcard lua/recipes/*.lua))

$(BUILD)/obj/builtin_recipes.o: $(BUILD)/gen/builtin_recipes.c
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# Built-in doctor rules, the same way (lua/rules is their source).
$(BUILD)/gen/builtin_rules.c: $(wildcard lua/rules/*.lua) scripts/embed-lua.lua
	@mkdir -p $(dir $@)
	$(Q)lua5.4 scripts/embed-lua.lua $@ packer_builtin_rules $(sort $(wildcard lua/rules/*.lua))

$(BUILD)/obj/builtin_rules.o: $(BUILD)/gen/builtin_rules.c
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libpacker.a: $(LIB_OBJ)
	@rm -f $@
	@$(if $(Q),echo "  LD      $@")
	$(Q)ar rcs $@ $^

$(BUILD)/libpacker.so: $(LIB_OBJ)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared -Wl,-soname,libpacker.so.$(SOVERSION) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/packer: $(CLI_OBJ) $(BUILD)/libpacker.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libpacker.a $(LIBS) $(RLLIB) -lm

# The Lua module takes its Lua symbols from the interpreter that loads it.
$(BUILD)/lua/packer.so: $(BUILD)/obj/lua_packer.o $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(LDFLAGS) -o $@ $^ $(LIBS_NOLUA) -lm

$(BUILD)/tests/%: spec/c/%.c $(wildcard spec/c/*.h) $(BUILD)/libpacker.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -Isrc -o $@ $< $(BUILD)/libpacker.a $(LIBS) $(LDFLAGS) -lm

$(BUILD)/examples/host: examples/host/host.c $(BUILD)/libpacker.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -Isrc -o $@ $< $(BUILD)/libpacker.a $(LIBS) $(LDFLAGS) -lm

# a client of `packer serve` in another process: libc and cJSON only
$(BUILD)/examples/serve-client: examples/serve-client/client.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(shell pkg-config --libs libcjson 2>/dev/null)

demo:
	@sh scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@sh scripts/demo.sh $(BUILD)

test: all $(C_TESTS)
	@sh scripts/run-tests.sh $(BUILD)

test-sanitize:
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" all \
	    $(patsubst $(BUILD)/%,build-asan/%,$(C_TESTS))
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    PACKER_SANITIZE=asan sh scripts/run-tests.sh build-asan
	@$(MAKE) --no-print-directory BUILD=build-tsan OPT="-O1 -g" SAN="-fsanitize=thread" \
	    build-tsan/libpacker.a build-tsan/packer $(patsubst $(BUILD)/%,build-tsan/%,$(C_TESTS))
	@TSAN_OPTIONS=halt_on_error=1 PACKER_SANITIZE=tsan sh scripts/run-tests.sh build-tsan c

# libFuzzer harnesses for every parser of untrusted bytes (need clang): the JSON
# parsers, and the pack reader built alone (it must not need libpacker).
fuzz: $(BUILD)/gen/builtin_recipes.c $(BUILD)/gen/builtin_rules.c
	@mkdir -p build-fuzz
	clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
	    $(shell pkg-config --cflags $(PKGS)) -o build-fuzz/fuzz_parsers \
	    spec/fuzz/fuzz_parsers.c $(LIB_SRC:%=src/%.c) $(BUILD)/gen/builtin_recipes.c $(BUILD)/gen/builtin_rules.c \
	    $(LIBS) -pthread -lm
	@echo "run: build-fuzz/fuzz_parsers -max_total_time=60 spec/fuzz/corpus"
	clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
	    -o build-fuzz/fuzz_pack_reader spec/fuzz/fuzz_pack_reader.c src/pack_reader.c
	@echo "run: build-fuzz/fuzz_pack_reader -max_total_time=60 spec/fuzz/pack-corpus"
	clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
	    $(shell pkg-config --cflags $(PKGS)) -o build-fuzz/fuzz_rpc \
	    spec/fuzz/fuzz_rpc.c src/rpc.c $(LIB_SRC:%=src/%.c) $(BUILD)/gen/builtin_recipes.c \
	    $(BUILD)/gen/builtin_rules.c $(LIBS) -pthread -lm
	@echo "run: build-fuzz/fuzz_rpc -max_total_time=60 spec/fuzz/rpc-corpus"

$(BUILD)/bench_registry: scripts/bench_registry.c $(BUILD)/libpacker.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -Isrc -o $@ $< $(BUILD)/libpacker.a $(LIBS) $(LDFLAGS) -lm

$(BUILD)/bench_serve: scripts/bench_serve.c $(BUILD)/libpacker.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -Isrc -o $@ $< $(BUILD)/libpacker.a $(LIBS) $(LDFLAGS) -lm

bench: $(BUILD)/bench_serve
bench: all $(BUILD)/bench_registry
	@sh scripts/bench.sh $(BUILD)

# the observer's benchmark helper (issue 6)
$(BUILD)/bench_observe: scripts/bench_observe.c $(BUILD)/libpacker.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -Isrc -o $@ $< $(BUILD)/libpacker.a $(LIBS) $(LDFLAGS) -lm
bench: $(BUILD)/bench_observe

install: all
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/lua/5.4 \
	    $(DESTDIR)$(PREFIX)/share/packer/lua/packer
	install -m 644 src/packer.h $(DESTDIR)$(PREFIX)/include/packer.h
	install -m 644 $(BUILD)/libpacker.a $(DESTDIR)$(PREFIX)/lib/libpacker.a
	install -m 755 $(BUILD)/libpacker.so $(DESTDIR)$(PREFIX)/lib/libpacker.so.$(SOVERSION)
	ln -sf libpacker.so.$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/libpacker.so
	install -m 755 $(BUILD)/packer $(DESTDIR)$(PREFIX)/bin/packer
	install -m 755 $(BUILD)/lua/packer.so $(DESTDIR)$(PREFIX)/lib/lua/5.4/packer.so
	install -m 644 lua/packer/*.lua $(DESTDIR)$(PREFIX)/share/packer/lua/packer/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|0.1.0|' packer.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/packer.pc

clean:
	rm -rf build build-asan build-tsan build-fuzz build-clang
