/* SPDX-License-Identifier: MIT */
/*
 * Signals (sigbus.c): SIGBUS on private pages of host mappings, the
 * lock-free table of mappings the signal handlers read, and chaining to the
 * program's own handlers.
 */
#ifndef GMEM_SIGBUS_H
#define GMEM_SIGBUS_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct host_mapping;

/*
 * Every host mapping of the process as the signal handlers see it, read
 * without locks. @start and @end are for the SIGSEGV handler; the rest for
 * the shootdown handler, under hm_lock, which writers hold while they change
 * the record too.
 */
struct hm_entry {
	_Atomic uintptr_t start, end;	/* end 0: no mapping */
	uint64_t uid;
	const struct host_mapping *m;	/* the record */
	bool used;			/* allocated; under all_mappings_lock */
};

#define HM_ANY	(~0ULL)

struct hm_entry *hm_alloc(void);
void hm_update(struct hm_entry *e, const struct host_mapping *m);
void hm_free(struct hm_entry *e);
bool hm_lookup(uintptr_t addr);
void hm_for_uid(uint64_t uid, void (*fn)(const struct hm_entry *e, void *arg),
		void *arg);
void hm_lock(sigset_t *saved);
void hm_unlock(const sigset_t *saved);
void hm_lock_handler(void);
void hm_unlock_handler(void);
void sigbus_install(void);

/* An action gmem's handler replaced, to pass other signals on to. */
struct chained_action {
	struct sigaction act;
	atomic_bool reset;		/* SA_RESETHAND fired: SIG_DFL now */
};

int sig_install(int sig, void (*handler)(int, siginfo_t *, void *),
		int flags, const sigset_t *mask, struct chained_action *c);
void sig_chain(struct chained_action *c, int sig, siginfo_t *si, void *ucv,
	       bool fatal);

#endif
