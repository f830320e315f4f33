// SPDX-License-Identifier: MIT
/*
 * The C library underneath the layer, and the layer's start.
 */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "layer.h"

struct real real;
pid_t layer_pid;
__thread int layer_depth __attribute__((tls_model("initial-exec")));

static pthread_once_t once = PTHREAD_ONCE_INIT, configured = PTHREAD_ONCE_INIT;

static void *next(const char *name)
{
	void *fn = dlsym(RTLD_NEXT, name);

	if (!fn) {
		fprintf(stderr, "gmem-kvm: the C library has no %s\n", name);
		abort();
	}
	return fn;
}

static void forked(void)
{
	layer_pid = getpid();
}

static void resolve(void)
{
	layer_pid = getpid();
	pthread_atfork(NULL, NULL, forked);
	real.ioctl = next("ioctl");
	real.mmap = next("mmap");
	real.munmap = next("munmap");
	real.mremap = next("mremap");
	real.madvise = next("madvise");
	real.mprotect = next("mprotect");
	real.mlockall = next("mlockall");
	real.msync = next("msync");
	real.pthread_sigmask = next("pthread_sigmask");
	real.sigprocmask = next("sigprocmask");
	real.fallocate = next("fallocate");
	real.close = next("close");
	real.sigaction = next("sigaction");
}

static void configure(void)
{
	config_load();
	hostmap_install_segv();
}

/* Every wrapper calls this first; it is cheap once done. */
void layer_init(void)
{
	extern char **environ;

	pthread_once(&once, resolve);
	/* A sanitizer's start-up calls mmap before the C library has set
	 * environ: the options are read on the first call after that. */
	if (environ)
		pthread_once(&configured, configure);
}

__attribute__((constructor)) static void layer_start(void)
{
	layer_init();
}

__attribute__((destructor)) static void layer_stop(void)
{
	layer_report();
}
