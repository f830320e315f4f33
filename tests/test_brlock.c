// SPDX-License-Identifier: MIT
/*
 * The big-reader lock with real threads: exclusion, writers waiting for
 * readers and back, and the hand-off that keeps either side from starving.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "brlock.h"

/* Widens a race window; never what an assertion depends on. */
static void pause_ms(long ms)
{
	struct timespec ts = { 0, ms * 1000000L };

	nanosleep(&ts, NULL);
}

/* No reader counted in, waiting or let in, no writer flagged. */
static bool lock_is_idle(struct brlock *l)
{
	for (int i = 0; i < BRLOCK_SLOTS; i++)
		if (atomic_load(&l->slot[i].readers))
			return false;
	return !atomic_load(&l->writer) && !atomic_load(&l->granted) &&
	       !(atomic_load(&l->waiting) & BRLOCK_WAITERS);
}

static void wait_for(atomic_int *flag, int val)
{
	while (atomic_load(flag) != val)
		sched_yield();
}

/* ------------------------------------------------------------ exclusion */

struct excl {
	struct brlock lock;
	uint64_t a, b;			/* plain: only the lock orders them */
	int writer_iters, reader_iters;
	atomic_int go;			/* every thread created */
	atomic_long torn;		/* reads that saw a != b */
	atomic_long backwards;		/* reads that saw a go down */
	atomic_long reads_mid_run;	/* reads between two writes */
	atomic_int owners;		/* fork_reader threads that own a slot */
};

static void *excl_writer(void *arg)
{
	struct excl *x = arg;

	wait_for(&x->go, 1);
	for (int i = 0; i < x->writer_iters; i++) {
		brlock_write_lock(&x->lock);
		x->a++;
		if (i % 64 == 0)
			sched_yield();	/* a reader inside now would see a != b */
		x->b++;
		brlock_write_unlock(&x->lock);
	}
	return NULL;
}

static void *excl_reader(void *arg)
{
	struct excl *x = arg;
	uint64_t last = 0, total = 2ULL * x->writer_iters;

	wait_for(&x->go, 1);
	for (int i = 0; i < x->reader_iters; i++) {
		uint64_t a, b;

		brlock_read_lock(&x->lock);
		a = x->a;
		if (i % 64 == 0)
			sched_yield();	/* a writer now would change b */
		b = x->b;
		brlock_read_unlock(&x->lock);

		if (a != b)
			atomic_fetch_add(&x->torn, 1);
		if (a < last)
			atomic_fetch_add(&x->backwards, 1);
		if (a != 0 && a != total)
			atomic_fetch_add(&x->reads_mid_run, 1);
		last = a;
	}
	return NULL;
}

/*
 * Two writers increment two counters under the write lock; readers read them
 * under the read lock and must always see them equal and never going back.
 * The totals prove the writers excluded each other too. Under TSan any
 * overlap of a reader and a writer is also a data race report. Both sides run
 * a fixed number of iterations; how much they overlapped is only reported.
 */
static void run_exclusion(int nreaders, int reader_iters, int writer_iters,
			  bool rare_writers)
{
	static struct excl x;
	pthread_t r[32], w[2];
	long torn, backwards;

	ASSERT_LE(nreaders, 32);
	if (rare_writers) {
		brlock_init_rare_writers(&x.lock);
		ASSERT_TRUE(x.lock.rare_writers);	/* this host has membarrier */
	} else {
		brlock_init(&x.lock);
	}
	x.a = x.b = 0;
	x.writer_iters = writer_iters;
	x.reader_iters = reader_iters;
	atomic_store(&x.go, 0);
	atomic_store(&x.torn, 0);
	atomic_store(&x.backwards, 0);
	atomic_store(&x.reads_mid_run, 0);
	for (int i = 0; i < nreaders; i++)
		ASSERT_EQ(pthread_create(&r[i], NULL, excl_reader, &x), 0);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(pthread_create(&w[i], NULL, excl_writer, &x), 0);
	atomic_store(&x.go, 1);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(pthread_join(w[i], NULL), 0);
	for (int i = 0; i < nreaders; i++)
		ASSERT_EQ(pthread_join(r[i], NULL), 0);

	torn = atomic_load(&x.torn);
	backwards = atomic_load(&x.backwards);
	printf("#   %d readers: %ld of %ld reads between two writes\n", nreaders,
	       atomic_load(&x.reads_mid_run), (long)nreaders * reader_iters);
	ASSERT_EQ(torn, 0);
	ASSERT_EQ(backwards, 0);
	ASSERT_EQ(x.a, 2ULL * writer_iters);
	ASSERT_EQ(x.b, 2ULL * writer_iters);
	ASSERT_TRUE(lock_is_idle(&x.lock));
	brlock_destroy(&x.lock);
}

TEST(writers_exclude_readers_and_each_other)
{
	run_exclusion(2, 2000000, 200000, false);
}

/* More readers than slots: some threads share a slot's count. */
TEST(writers_exclude_readers_that_share_slots)
{
	run_exclusion(BRLOCK_SLOTS + 3, 20000, 20000, false);
}

/* Readers that own a slot take no fence: the writers' membarrier() does. */
TEST(rare_writers_exclude_readers_that_take_no_fence)
{
	run_exclusion(2, 2000000, 20000, true);
}

TEST(rare_writers_exclude_owners_and_sharers_of_slots)
{
	run_exclusion(BRLOCK_SLOTS + 3, 20000, 5000, true);
}

/* --------------------------------------------------- writer after reader */

struct order {
	struct brlock lock;
	atomic_int trying;		/* the other thread is about to lock */
	atomic_int holding;		/* the other thread holds the lock */
	atomic_int released;		/* main has released its lock */
	int released_seen;		/* `released` as the other thread got the lock */
};

static void *order_writer(void *arg)
{
	struct order *o = arg;

	atomic_store(&o->trying, 1);
	brlock_write_lock(&o->lock);
	o->released_seen = atomic_load(&o->released);
	atomic_store(&o->holding, 1);
	brlock_write_unlock(&o->lock);
	return NULL;
}

TEST(writer_waits_for_a_reader_in_progress)
{
	static struct order o;
	pthread_t t;
	int holding_while_read, holding_after_pause;

	brlock_init(&o.lock);
	atomic_store(&o.trying, 0);
	atomic_store(&o.holding, 0);
	atomic_store(&o.released, 0);
	o.released_seen = -1;

	brlock_read_lock(&o.lock);
	ASSERT_EQ(pthread_create(&t, NULL, order_writer, &o), 0);
	wait_for(&o.trying, 1);
	/* The writer raises its flag, then has to wait for us. */
	while (!atomic_load(&o.lock.writer) && !atomic_load(&o.holding))
		sched_yield();
	holding_while_read = atomic_load(&o.holding);
	pause_ms(20);
	holding_after_pause = atomic_load(&o.holding);
	atomic_store(&o.released, 1);
	brlock_read_unlock(&o.lock);
	ASSERT_EQ(pthread_join(t, NULL), 0);

	ASSERT_EQ(holding_while_read, 0);
	ASSERT_EQ(holding_after_pause, 0);
	ASSERT_EQ(o.released_seen, 1);
	ASSERT_TRUE(atomic_load(&o.holding));
	ASSERT_TRUE(lock_is_idle(&o.lock));
	brlock_destroy(&o.lock);
}

/* --------------------------------------------------- reader after writer */

static void *order_reader(void *arg)
{
	struct order *o = arg;

	atomic_store(&o->trying, 1);
	brlock_read_lock(&o->lock);
	o->released_seen = atomic_load(&o->released);
	atomic_store(&o->holding, 1);
	brlock_read_unlock(&o->lock);
	return NULL;
}

TEST(reader_waits_for_a_writer_in_progress)
{
	static struct order o;
	pthread_t t;
	int holding_while_written;

	brlock_init(&o.lock);
	atomic_store(&o.trying, 0);
	atomic_store(&o.holding, 0);
	atomic_store(&o.released, 0);
	o.released_seen = -1;

	brlock_write_lock(&o.lock);
	ASSERT_EQ(pthread_create(&t, NULL, order_reader, &o), 0);
	wait_for(&o.trying, 1);
	pause_ms(20);			/* let it reach the futex */
	holding_while_written = atomic_load(&o.holding);
	atomic_store(&o.released, 1);
	brlock_write_unlock(&o.lock);
	ASSERT_EQ(pthread_join(t, NULL), 0);

	ASSERT_EQ(holding_while_written, 0);
	ASSERT_EQ(o.released_seen, 1);
	ASSERT_TRUE(atomic_load(&o.holding));
	ASSERT_TRUE(lock_is_idle(&o.lock));
	brlock_destroy(&o.lock);
}

/* ------------------------------------------------------ readers share */

static void *share_reader(void *arg)
{
	struct order *o = arg;

	brlock_read_lock(&o->lock);
	atomic_store(&o->holding, 1);
	brlock_read_unlock(&o->lock);
	return NULL;
}

TEST(readers_on_other_threads_enter_while_one_holds_the_lock)
{
	static struct order o;
	pthread_t t;
	int entered;

	brlock_init(&o.lock);
	atomic_store(&o.holding, 0);
	brlock_read_lock(&o.lock);
	ASSERT_EQ(pthread_create(&t, NULL, share_reader, &o), 0);
	/* Joined while we still read: it never waited for us. */
	ASSERT_EQ(pthread_join(t, NULL), 0);
	entered = atomic_load(&o.holding);
	brlock_read_unlock(&o.lock);
	ASSERT_EQ(entered, 1);
	ASSERT_TRUE(lock_is_idle(&o.lock));
	brlock_destroy(&o.lock);
}

/* ------------------------------------------ readers beside a looping writer */

#define HANDOFF_READERS	4
#define HANDOFF_CYCLES	2000

struct handoff {
	struct brlock lock;
	atomic_int held;		/* the writer holds its first cycle */
	atomic_int go;			/* every reader waits: start looping */
	atomic_long cycles;		/* write cycles done, stored under the lock */
	long seen[HANDOFF_READERS];	/* `cycles` as each reader got in */
};

static void *handoff_writer(void *arg)
{
	struct handoff *h = arg;

	brlock_write_lock(&h->lock);
	atomic_store(&h->held, 1);
	wait_for(&h->go, 1);
	/* Takes the lock back at once, as a thread converting in a loop. */
	for (long i = 1; i <= HANDOFF_CYCLES; i++) {
		brlock_write_unlock(&h->lock);
		brlock_write_lock(&h->lock);
		atomic_store(&h->cycles, i);
	}
	brlock_write_unlock(&h->lock);
	return NULL;
}

struct handoff_reader {
	struct handoff *h;
	int i;
};

static void *handoff_reader(void *arg)
{
	struct handoff_reader *r = arg;

	brlock_read_lock(&r->h->lock);
	r->h->seen[r->i] = atomic_load(&r->h->cycles);
	brlock_read_unlock(&r->h->lock);
	return NULL;
}

/*
 * Readers that wait while a writer holds the lock get in before the writer,
 * which takes the lock straight back each time, has held it
 * BRLOCK_WRITE_BATCH more times: each reads the cycle count of the hold it
 * got in after, below the batch. The readers are known to wait (counted in
 * `waiting`) before the writer starts looping, and the bound holds however
 * they are scheduled.
 */
TEST(readers_waiting_on_a_looping_writer_get_in_within_a_write_batch)
{
	static struct handoff h;
	struct handoff_reader arg[HANDOFF_READERS];
	pthread_t w, r[HANDOFF_READERS];
	long late = 0;

	for (int round = 0; round < 50; round++) {
		brlock_init(&h.lock);
		atomic_store(&h.held, 0);
		atomic_store(&h.go, 0);
		atomic_store(&h.cycles, 0);
		ASSERT_EQ(pthread_create(&w, NULL, handoff_writer, &h), 0);
		wait_for(&h.held, 1);
		for (int i = 0; i < HANDOFF_READERS; i++) {
			arg[i] = (struct handoff_reader){ &h, i };
			h.seen[i] = -1;
			ASSERT_EQ(pthread_create(&r[i], NULL, handoff_reader, &arg[i]), 0);
		}
		while ((atomic_load(&h.lock.waiting) & BRLOCK_WAITERS) != HANDOFF_READERS)
			sched_yield();
		atomic_store(&h.go, 1);
		for (int i = 0; i < HANDOFF_READERS; i++)
			ASSERT_EQ(pthread_join(r[i], NULL), 0);
		ASSERT_EQ(pthread_join(w, NULL), 0);
		for (int i = 0; i < HANDOFF_READERS; i++) {
			ASSERT_GE(h.seen[i], 0);
			if (h.seen[i] >= BRLOCK_WRITE_BATCH)
				late++;
		}
		ASSERT_EQ(atomic_load(&h.cycles), HANDOFF_CYCLES);
		ASSERT_TRUE(lock_is_idle(&h.lock));
		brlock_destroy(&h.lock);
	}
	ASSERT_EQ(late, 0);
}

/* ------------------------------------------ a writer beside a reader stream */

#define STREAM_READERS	4

struct stream {
	struct brlock lock;
	atomic_int stop;
	atomic_long cycles;		/* write cycles done, stored under the lock */
	atomic_long sections;		/* read sections done */
	atomic_long overtakes;		/* sections that jumped a waiting writer */
};

static void *stream_writer(void *arg)
{
	struct stream *st = arg;

	for (long i = 1; i <= HANDOFF_CYCLES; i++) {
		brlock_write_lock(&st->lock);
		atomic_store(&st->cycles, i);
		brlock_write_unlock(&st->lock);
	}
	atomic_store(&st->stop, 1);
	return NULL;
}

/*
 * Reads in a loop with no pause. A section that finds a writer waiting
 * (its flag up) is the last this thread gets before that writer: the next
 * one waits for its unlock, so never again sees the flag with the same
 * cycle count.
 */
static void *stream_reader(void *arg)
{
	struct stream *st = arg;
	long flagged_at = -1;

	while (!atomic_load(&st->stop)) {
		brlock_read_lock(&st->lock);
		if (atomic_load(&st->lock.writer)) {
			long c = atomic_load(&st->cycles);

			if (c == flagged_at)
				atomic_fetch_add(&st->overtakes, 1);
			flagged_at = c;
		}
		brlock_read_unlock(&st->lock);
		atomic_fetch_add(&st->sections, 1);
	}
	return NULL;
}

/*
 * A writer among readers that take the lock back at once gets in, every
 * time (the writer finishes its cycles), and no reader overtakes it twice.
 */
TEST(a_writer_gets_in_beside_a_stream_of_readers)
{
	static struct stream st;
	pthread_t w, r[STREAM_READERS];

	brlock_init(&st.lock);
	atomic_store(&st.stop, 0);
	atomic_store(&st.cycles, 0);
	atomic_store(&st.sections, 0);
	atomic_store(&st.overtakes, 0);
	for (int i = 0; i < STREAM_READERS; i++)
		ASSERT_EQ(pthread_create(&r[i], NULL, stream_reader, &st), 0);
	ASSERT_EQ(pthread_create(&w, NULL, stream_writer, &st), 0);
	ASSERT_EQ(pthread_join(w, NULL), 0);
	for (int i = 0; i < STREAM_READERS; i++)
		ASSERT_EQ(pthread_join(r[i], NULL), 0);
	printf("#   %ld read sections beside %d write cycles\n",
	       atomic_load(&st.sections), HANDOFF_CYCLES);
	ASSERT_EQ(atomic_load(&st.cycles), HANDOFF_CYCLES);
	ASSERT_EQ(atomic_load(&st.overtakes), 0);
	ASSERT_TRUE(lock_is_idle(&st.lock));
	brlock_destroy(&st.lock);
}

/* ---------------------------------------------------------------- slots */

struct slot_probe {
	atomic_int *taken;		/* threads that have their slot */
	atomic_int *leave;		/* set: exit */
	unsigned int slot[2];
};

static void *slot_of(void *arg)
{
	struct slot_probe *p = arg;

	p->slot[0] = brlock_my_slot();
	p->slot[1] = brlock_my_slot();
	if (p->taken) {
		atomic_fetch_add(p->taken, 1);
		wait_for(p->leave, 1);
	}
	return NULL;
}

/* Start a thread that takes its slot and exits: the slot it had. */
static unsigned int slot_of_a_new_thread(void)
{
	struct slot_probe p = { 0 };
	pthread_t t;

	ASSERT_EQ(pthread_create(&t, NULL, slot_of, &p), 0);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	ASSERT_EQ(p.slot[1], p.slot[0]);
	return p.slot[0];
}

/*
 * Threads alive together own distinct slots, stable for their life; those
 * beyond the owners share the last; a thread that exits gives its slot back.
 */
TEST(live_threads_own_distinct_slots_and_exits_give_them_back)
{
	enum { N = BRLOCK_SLOTS + 4 };
	static struct slot_probe p[N];
	atomic_int taken = 0, leave = 0;
	bool seen[BRLOCK_SLOTS] = { false };
	unsigned int mine = brlock_my_slot(), shared = 0;
	pthread_t t[N];

	/* Exited threads gave their slots back: a new one owns one again. */
	for (int i = 0; i < 3 * BRLOCK_SLOTS; i++)
		ASSERT_LT(slot_of_a_new_thread(), BRLOCK_SHARED_SLOT);
	if (mine != BRLOCK_SHARED_SLOT)
		seen[mine] = true;
	for (int i = 0; i < N; i++) {
		p[i] = (struct slot_probe){ &taken, &leave, { 0, 0 } };
		ASSERT_EQ(pthread_create(&t[i], NULL, slot_of, &p[i]), 0);
	}
	while (atomic_load(&taken) < N)
		sched_yield();
	for (int i = 0; i < N; i++) {
		ASSERT_LT(p[i].slot[0], BRLOCK_SLOTS);
		ASSERT_EQ(p[i].slot[1], p[i].slot[0]);
		if (p[i].slot[0] == BRLOCK_SHARED_SLOT) {
			shared++;
			continue;
		}
		ASSERT_TRUE(!seen[p[i].slot[0]]);
		seen[p[i].slot[0]] = true;
	}
	/* Main and the 20 threads: 15 owners, the rest share. */
	ASSERT_EQ(shared + (mine == BRLOCK_SHARED_SLOT ? 1 : 0),
		  N + 1 - BRLOCK_SHARED_SLOT);
	atomic_store(&leave, 1);
	for (int i = 0; i < N; i++)
		ASSERT_EQ(pthread_join(t[i], NULL), 0);
	ASSERT_LT(slot_of_a_new_thread(), BRLOCK_SHARED_SLOT);
}

/* TSan cannot start threads in the child of a multi-threaded fork. */
#ifdef UNDER_TSAN
#define CHILD_THREADS 0
#else
#define CHILD_THREADS 1
#endif

static void *fork_reader(void *arg)
{
	struct excl *x = arg;

	if (brlock_my_slot() != BRLOCK_SHARED_SLOT)
		atomic_fetch_add(&x->owners, 1);
	for (int i = 0; i < 200000; i++) {
		brlock_read_lock(&x->lock);
		if (x->a != x->b)
			atomic_fetch_add(&x->torn, 1);
		brlock_read_unlock(&x->lock);
	}
	return NULL;
}

/*
 * A fork child: its writers' membarrier() works there, and of the parent's
 * threads only the forking one owns a slot, so the child's new threads own
 * the others (CHILD_THREADS readers, beside a writer).
 */
static int fork_child(struct excl *c, unsigned int parent_slot)
{
	pthread_t cr[BRLOCK_SHARED_SLOT - 1];
	int n = CHILD_THREADS ? BRLOCK_SHARED_SLOT - 1 : 0;

	atomic_store(&c->torn, 0);
	atomic_store(&c->owners, 0);
	/* The parent's readers may have held it: a fresh lock. */
	brlock_init_rare_writers(&c->lock);
	if (brlock_my_slot() != parent_slot)
		return 1;
	for (int i = 0; i < n; i++)
		if (pthread_create(&cr[i], NULL, fork_reader, c))
			return 2;
	for (int i = 0; i < 20000; i++) {
		brlock_write_lock(&c->lock);
		c->a++;
		c->b++;
		brlock_write_unlock(&c->lock);
	}
	brlock_read_lock(&c->lock);
	brlock_read_unlock(&c->lock);
	for (int i = 0; i < n; i++)
		if (pthread_join(cr[i], NULL))
			return 3;
	if (atomic_load(&c->owners) != n)
		return 5;
	if (atomic_load(&c->torn) || c->a != 20000 || c->b != 20000 ||
	    !lock_is_idle(&c->lock))
		return 4;
	return 0;
}

TEST(rare_writers_work_in_a_fork_child)
{
	static struct excl x;
	static struct slot_probe p[BRLOCK_SHARED_SLOT];
	atomic_int taken = 0, leave = 0;
	unsigned int mine = brlock_my_slot();
	pthread_t t[BRLOCK_SHARED_SLOT];
	int status;
	pid_t pid;

	/* Parent threads own every other slot while the fork happens. */
	for (int i = 0; i < BRLOCK_SHARED_SLOT; i++) {
		p[i] = (struct slot_probe){ &taken, &leave, { 0, 0 } };
		ASSERT_EQ(pthread_create(&t[i], NULL, slot_of, &p[i]), 0);
	}
	while (atomic_load(&taken) < BRLOCK_SHARED_SLOT)
		sched_yield();
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0)
		_exit(fork_child(&x, mine));
	atomic_store(&leave, 1);
	for (int i = 0; i < BRLOCK_SHARED_SLOT; i++)
		ASSERT_EQ(pthread_join(t[i], NULL), 0);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	if (!CHILD_THREADS)
		printf("# under TSan the child starts no thread\n");
}
