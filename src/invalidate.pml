/* SPDX-License-Identifier: MIT */
/*
 * A model of gmem's invalidation protocol (invalidate.c, fault.c,
 * convert.c, file.c, brlock.c) for the SPIN model checker. docs/design.md,
 * "The model of the invalidation protocol", maps every name here to the C
 * code and says what is left out. Run by tests/model.sh (make model).
 *
 * One VM, two files of one page each, bound at gfns 0 and 1: a page is
 * named by its gfn, which is also its file's number. Page 0 starts shared,
 * page 1 private.
 * Processes:
 *   vcpu_gmem    gmem's fault: a present entry of the access's kind read
 *                with no lock is the answer; else the file's invalidate
 *                lock held shared from the sequence snapshot to the
 *                stage-2 install;
 *   vcpu_kernel  the kernel's fault: the lock dropped before mmu_lock, so
 *                an invalidation can start and end inside it and the
 *                sequence / in-progress re-check is its only guard;
 *   converter    NCONV conversions, each of one file's page;
 *   puncher      NPUNCH hole punches, each of one file's page;
 *   monitor      checks the invariant in every reachable state.
 *
 * -D switches break the protocol, one at a time; each must yield a trail:
 *   BROKEN_NO_SEQ_RECHECK   the install ignores mmu_invalidate_seq;
 *   BROKEN_NO_IN_PROGRESS   the install ignores mmu_invalidate_in_progress;
 *   BROKEN_OVERLAP_OFF_BY_ONE the overlap test misses the last page of the
 *                           range (start + 1 < range_end for start < range_end);
 *   BROKEN_SNAPSHOT_LATE    the fault snapshots the sequence after it read
 *                           the attribute;
 *   BROKEN_RANGE_RESET      each invalidation start resets the accumulated
 *                           range, not only the first of those in progress;
 *   BROKEN_STORE_AFTER_END  conversion stores the attribute after its
 *                           invalidation ended;
 *   BROKEN_LOCK_ORDER       gmem's fault takes mmu_lock before the file's
 *                           invalidate lock: a deadlock (SPIN's invalid end
 *                           state), not an assertion.
 * GMEM_FAULTS_ONLY runs a second vcpu_gmem in place of vcpu_kernel.
 * NCONV, NPUNCH and NFAULT (per vCPU) bound the operations.
 */

#ifndef NCONV
#define NCONV	1
#endif
#ifndef NPUNCH
#define NPUNCH	1
#endif
#ifndef NFAULT
#define NFAULT	1
#endif

#define NGFN	2
#define INVALID	255
#define FILE_OF(g)	(g)

/* brlock.h: reader count, writer flag, writers mutex. */
typedef brlock {
	byte readers;
	bool writer;
	bool writers;
};

/* vm->mmu_lock and file->invalidate_lock of the two files. */
brlock mmu_lock;
brlock invalidate_lock[2];

/* gmem_vm: the invalidation state. */
byte mmu_invalidate_seq;
byte mmu_invalidate_in_progress;
byte mmu_invalidate_range_start = INVALID;
byte mmu_invalidate_range_end = INVALID;

/* The stage-2 table: one leaf per gfn. */
bool s2_present[NGFN];
bool s2_private[NGFN];
byte s2_pfn[NGFN];

/*
 * The files: the attribute of each page, and its folio: 0 absent, else the
 * incarnation of its frame (a punch frees it, the next fault allocates the
 * next incarnation).
 */
bool attr_private[NGFN];
byte folio[NGFN];
byte incarnations[NGFN];

/* Ghost: invalidations of each file started plus ended, for vcpu_gmem. */
byte file_invalidations[2];

/*
 * brlock.h. A reader counts itself in unless a writer holds or wants the
 * lock; a writer takes the writers mutex, raises its flag and waits for the
 * readers to drain. brlock.c's handshake (the reader's increment and the
 * writer's flag, both sequentially consistent) makes a reader's check and
 * increment one step here: either the reader sees the flag or the writer
 * sees the reader.
 */
inline read_lock(l)
{
	atomic { !l.writer -> l.readers++ }
}

inline read_unlock(l)
{
	l.readers--
}

inline write_lock(l)
{
	atomic { !l.writers -> l.writers = true; l.writer = true };
	l.readers == 0
}

inline write_unlock(l)
{
	d_step { l.writer = false; l.writers = false }
}

/* Does the stage-2 entry of @g agree with the attribute and the folio? */
#define AGREES(g) (!s2_present[g] || \
	(s2_private[g] == attr_private[g] && folio[g] != 0 && s2_pfn[g] == folio[g]))
/* Is @g inside an invalidation in progress (the correct overlap test)? */
#define COVERED(g) (mmu_invalidate_in_progress > 0 && \
	(mmu_invalidate_range_start == INVALID || \
	 (mmu_invalidate_range_start <= g && g < mmu_invalidate_range_end)))
#define SETTLED(g)	(COVERED(g) || AGREES(g))
#define ALL_SETTLED	(SETTLED(0) && SETTLED(1))
#define ALL_AGREE	(AGREES(0) && AGREES(1))

/* vm_invalidate_start, under mmu_lock exclusive. */
inline vm_invalidate_start()
{
	mmu_invalidate_in_progress++;
#ifdef BROKEN_RANGE_RESET
	if
	:: true ->
#else
	if
	:: mmu_invalidate_in_progress == 1 ->
#endif
		mmu_invalidate_range_start = INVALID;
		mmu_invalidate_range_end = INVALID
	:: else
	fi
}

/* vm_invalidate_range_add, under mmu_lock exclusive. */
inline vm_invalidate_range_add(lo, hi)
{
	if
	:: mmu_invalidate_range_start == INVALID ->
		mmu_invalidate_range_start = lo;
		mmu_invalidate_range_end = hi
	:: else ->
		if
		:: lo < mmu_invalidate_range_start -> mmu_invalidate_range_start = lo
		:: else
		fi;
		if
		:: hi > mmu_invalidate_range_end -> mmu_invalidate_range_end = hi
		:: else
		fi
	fi
}

/*
 * vm_invalidate_end, under mmu_lock exclusive. Once none is in progress, no
 * stage-2 entry may contradict an attribute or map a frame that is gone.
 */
inline vm_invalidate_end()
{
	mmu_invalidate_seq++;
	mmu_invalidate_in_progress--;
	assert(mmu_invalidate_in_progress > 0 || ALL_AGREE)
}

/* S2_ZAP_* filters of s2_zap. */
#define ZAP_SHARED	1
#define ZAP_PRIVATE	2
#define ZAP_ALL		3

/*
 * file_invalidate_start: under the file's invalidate lock exclusive, take
 * mmu_lock exclusive, start, add the range, zap the entries @filter selects.
 * (Each step under mmu_lock exclusive is one step here: nothing else reads
 * or writes what it touches meanwhile.)
 */
inline file_invalidate_start(f, lo, hi, filter)
{
	write_lock(mmu_lock);
	d_step {
		vm_invalidate_start();
		vm_invalidate_range_add(lo, hi);
		i = lo;
		do
		:: i < hi ->
			if
			:: s2_present[i] &&
			   ((filter & ZAP_PRIVATE) && s2_private[i] ||
			    (filter & ZAP_SHARED) && !s2_private[i]) ->
				s2_present[i] = false;
				s2_private[i] = false;
				s2_pfn[i] = 0
			:: else
			fi;
			i++
		:: else -> break
		od;
		i = 0;
		file_invalidations[f]++;
		mmu_lock.writer = false;
		mmu_lock.writers = false
	}
}

inline file_invalidate_end(f)
{
	write_lock(mmu_lock);
	d_step {
		vm_invalidate_end();
		file_invalidations[f]++;
		mmu_lock.writer = false;
		mmu_lock.writers = false
	}
}

/* The range of one file: [0,1) of file 0 or [1,2) of file 1. */
inline pick_range(f, lo, hi)
{
	if
	:: f = 0
	:: f = 1
	fi;
	lo = f;
	hi = f + 1
}

/* An access to gfn @g, private or shared. */
inline pick_access(g, private)
{
	if
	:: g = 0
	:: g = 1
	fi;
	if
	:: private = true
	:: private = false
	fi
}

/*
 * vm_invalidate_retry_range for the single page [g, g + 1), under mmu_lock
 * shared, then s2_map if it says go: one step, since no writer of the
 * invalidation state runs while a reader holds mmu_lock, and the install is
 * one atomic store (the newer fault wins).
 */
inline retry_or_map(g, private, seq, pfn, retry)
{
	d_step {
		retry = false;
#ifndef BROKEN_NO_IN_PROGRESS
		if
		:: mmu_invalidate_in_progress > 0 ->
			if
			:: mmu_invalidate_range_start == INVALID -> retry = true
#ifdef BROKEN_OVERLAP_OFF_BY_ONE
			:: g + 1 < mmu_invalidate_range_end &&
			   g + 1 > mmu_invalidate_range_start -> retry = true
#else
			:: g < mmu_invalidate_range_end &&
			   g + 1 > mmu_invalidate_range_start -> retry = true
#endif
			:: else
			fi
		:: else
		fi;
#endif
#ifndef BROKEN_NO_SEQ_RECHECK
		if
		:: mmu_invalidate_seq != seq -> retry = true
		:: else
		fi;
#endif
		if
		:: !retry ->
			s2_present[g] = true;
			s2_private[g] = private;
			s2_pfn[g] = pfn
		:: else
		fi
	}
}

/* folio_alloc, under the file's invalidate lock, and file_pfn. */
inline get_folio(g, pfn)
{
	if
	:: folio[g] == 0 ->
		incarnations[g]++;
		folio[g] = incarnations[g]
	:: else
	fi;
	pfn = folio[g]
}

/*
 * fault() in fault.c, with file_get_pfn: the file's invalidate lock shared
 * from the sequence snapshot to the install, so no invalidation of the
 * file starts or ends inside it. Under the file lock, the snapshot, the
 * attribute check (a mismatch is a memory-fault exit) and the folio are
 * one step: only other files' invalidations can run beside them.
 */
proctype vcpu_gmem()
{
	byte g, f, seq, pfn, n, seen;
	bool private, mismatch, retry, spurious;

	do
	:: n < NFAULT ->
		atomic { pick_access(g, private); f = FILE_OF(g) };
		/*
		 * spurious_fault: the entry read with no lock held (one atomic
		 * load, s2_lookup_unlocked). An entry of the access's kind is the
		 * answer: it must agree with the attribute and name the folio.
		 */
		d_step {
			spurious = s2_present[g] && s2_private[g] == private;
			assert(!spurious || AGREES(g))
		}
		if
		:: spurious -> goto done
		:: else
		fi;
again:
#ifdef BROKEN_LOCK_ORDER
		read_lock(mmu_lock);
#endif
		read_lock(invalidate_lock[f]);
		d_step {
			seen = file_invalidations[f];
#ifndef BROKEN_SNAPSHOT_LATE
			seq = mmu_invalidate_seq;
#endif
			mismatch = (attr_private[g] != private);
			if
			:: !mismatch -> get_folio(g, pfn)
			:: else
			fi
		}
#ifdef BROKEN_SNAPSHOT_LATE
		seq = mmu_invalidate_seq;
#endif
		if
		:: mismatch ->
#ifdef BROKEN_LOCK_ORDER
			read_unlock(mmu_lock);
#endif
			read_unlock(invalidate_lock[f])
		:: else ->
#ifndef BROKEN_LOCK_ORDER
			read_lock(mmu_lock);
#endif
			retry_or_map(g, private, seq, pfn, retry);
			/* Only another file's invalidations can move under it. */
			assert(file_invalidations[f] == seen);
			d_step {
				mmu_lock.readers--;
				invalidate_lock[f].readers--
			}
			if
			:: retry -> goto again
			:: else
			fi
		fi;
done:
		skip;
		d_step { n++; g = 0; f = 0; seq = 0; pfn = 0; seen = 0;
			 private = false; mismatch = false; retry = false;
			 spurious = false }
	:: else -> break
	od
}

/*
 * The kernel's fault: the sequence snapshot first, then the attribute with
 * no lock held (kvm_mem_is_private), the folio under the file's invalidate
 * lock (kvm_gmem_get_pfn), and the re-check and install under mmu_lock with
 * the file lock gone. An invalidation can start and end anywhere in it.
 */
proctype vcpu_kernel()
{
	byte g, f, seq, pfn, n;
	bool private, mismatch, retry;

	do
	:: n < NFAULT ->
		atomic { pick_access(g, private); f = FILE_OF(g) };
again:
#ifndef BROKEN_SNAPSHOT_LATE
		seq = mmu_invalidate_seq;
#endif
		mismatch = (attr_private[g] != private);
#ifdef BROKEN_SNAPSHOT_LATE
		seq = mmu_invalidate_seq;
#endif
		if
		:: !mismatch ->
			read_lock(invalidate_lock[f]);
			d_step { get_folio(g, pfn); invalidate_lock[f].readers-- };
			read_lock(mmu_lock);
			retry_or_map(g, private, seq, pfn, retry);
			read_unlock(mmu_lock);
			if
			:: retry -> goto again
			:: else
			fi
		:: else
		fi;
		d_step { n++; g = 0; f = 0; seq = 0; pfn = 0;
			 private = false; mismatch = false; retry = false }
	:: else -> break
	od
}

/*
 * set_attributes() in convert.c, under the invalidate lock exclusive: a
 * range already in the requested state costs nothing; otherwise start
 * (zapping the entries of the other kind), store the attribute, end.
 */
proctype converter()
{
	byte f, lo, hi, i, n;
	bool private, done;

	do
	:: n < NCONV ->
		atomic {
			pick_range(f, lo, hi);
			if
			:: private = true
			:: private = false
			fi
		};
		write_lock(invalidate_lock[f]);
		d_step {
			done = true;
			i = lo;
			do
			:: i < hi -> done = done && attr_private[i] == private; i++
			:: else -> break
			od;
			i = 0
		}
		if
		:: done
		:: else ->
			file_invalidate_start(f, lo, hi,
					      (private -> ZAP_SHARED : ZAP_PRIVATE));
#ifdef BROKEN_STORE_AFTER_END
			file_invalidate_end(f);
#endif
			d_step {
				i = lo;
				do
				:: i < hi -> attr_private[i] = private; i++
				:: else -> break
				od;
				i = 0
			}
#ifndef BROKEN_STORE_AFTER_END
			file_invalidate_end(f)
#endif
		fi;
		write_unlock(invalidate_lock[f]);
		d_step { n++; f = 0; lo = 0; hi = 0; private = false; done = false }
	:: else -> break
	od
}

/* punch_hole() in file.c: start zapping everything, free the folios, end. */
proctype puncher()
{
	byte f, lo, hi, i, n;

	do
	:: n < NPUNCH ->
		atomic { pick_range(f, lo, hi) };
		write_lock(invalidate_lock[f]);
		file_invalidate_start(f, lo, hi, ZAP_ALL);
		d_step {
			i = lo;
			do
			:: i < hi -> folio[i] = 0; i++
			:: else -> break
			od;
			i = 0
		}
		file_invalidate_end(f);
		write_unlock(invalidate_lock[f]);
		d_step { n++; f = 0; lo = 0; hi = 0 }
	:: else -> break
	od
}

/*
 * Invariant 2 in every reachable state: outside the ranges in progress,
 * stage-2 agrees with the attributes and maps only present folios.
 */
active proctype monitor()
{
end:	atomic { !ALL_SETTLED -> assert(ALL_SETTLED) }
}

/* Page 0 starts shared, page 1 private: one conversion goes either way. */
init
{
	atomic {
		attr_private[1] = true;
		run vcpu_gmem();
#ifndef GMEM_FAULTS_ONLY
		run vcpu_kernel();
#else
		run vcpu_gmem();
#endif
		run converter();
		run puncher()
	}
}
