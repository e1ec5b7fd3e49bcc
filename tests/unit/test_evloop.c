/* test_evloop.c: cmocka unit tests for the event loop's timers (vmm/evloop.c), on real epoll and eventfds. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/evloop.h"

#define MS 1000000ull

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct tctx {
	struct evloop *l;
	struct evloop_timer *t;
	unsigned int fired;
	unsigned int stop_after; /* stop the loop on this firing (0: never) */
	uint64_t rearm_ns;       /* re-arm itself with this delay until stop_after */
	uint64_t at[8];          /* when each firing happened */
};

static void on_timer(void *ctx)
{
	struct tctx *c = ctx;
	if (c->fired < 8)
		c->at[c->fired] = mono_ns();
	c->fired++;
	if (c->stop_after && c->fired == c->stop_after)
		evloop_stop(c->l);
	else if (c->rearm_ns)
		evloop_timer_arm(c->t, c->rearm_ns);
}

static int setup(void **state)
{
	static struct evloop l;
	if (evloop_init(&l) != 0)
		return -1;
	*state = &l;
	return 0;
}

static int teardown(void **state)
{
	evloop_destroy(*state);
	return 0;
}

/* A timer fires once, no earlier than its delay; re-arming an armed timer keeps the deadline. */
static void test_timer_fires_once_at_first_deadline(void **state)
{
	struct evloop *l = *state;
	struct evloop_timer t;
	struct tctx c = { .l = l, .t = &t, .stop_after = 1 };

	assert_int_equal(evloop_timer_add(l, &t, on_timer, &c), 0);
	uint64_t t0 = mono_ns();
	evloop_timer_arm(&t, 30 * MS);
	evloop_timer_arm(&t, 5000 * MS); /* already armed: ignored */
	assert_int_equal(evloop_run(l), 0);
	assert_int_equal(c.fired, 1);
	assert_true(c.at[0] - t0 >= 30 * MS);
	assert_true(c.at[0] - t0 < 3000 * MS);
	assert_int_equal(t.due_ns, 0); /* disarmed by firing */
	evloop_timer_del(l, &t);
}

/* A cancelled timer never fires; a callback may re-arm its own timer. */
static void test_timer_cancel_and_rearm(void **state)
{
	struct evloop *l = *state;
	struct evloop_timer a, b;
	struct tctx ca = { .l = l, .t = &a };
	struct tctx cb = { .l = l, .t = &b, .stop_after = 3, .rearm_ns = 10 * MS };

	assert_int_equal(evloop_timer_add(l, &a, on_timer, &ca), 0);
	assert_int_equal(evloop_timer_add(l, &b, on_timer, &cb), 0);
	evloop_timer_arm(&a, 1 * MS);
	evloop_timer_cancel(&a);
	evloop_timer_arm(&b, 10 * MS);
	uint64_t t0 = mono_ns();
	assert_int_equal(evloop_run(l), 0);
	assert_int_equal(ca.fired, 0);
	assert_int_equal(cb.fired, 3);
	assert_true(cb.at[2] - t0 >= 30 * MS);
	assert_true(cb.at[1] - cb.at[0] >= 10 * MS);
	evloop_timer_del(l, &a);
	evloop_timer_del(l, &b);
}

struct fdctx {
	struct evloop_timer *t;
	unsigned int calls;
};

static void on_efd(void *ctx, int fd, uint32_t ev)
{
	struct fdctx *c = ctx;
	uint64_t v;
	(void)ev;
	assert_int_equal(read(fd, &v, sizeof(v)), sizeof(v));
	c->calls++;
	evloop_timer_arm(c->t, 0);
}

/* fd callbacks run as before; a timer armed from one with no delay runs in the same wake-up. */
static void test_timer_armed_from_fd_callback(void **state)
{
	struct evloop *l = *state;
	struct evloop_timer t;
	struct tctx c = { .l = l, .t = &t, .stop_after = 1 };
	struct fdctx f = { .t = &t };
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	uint64_t one = 1;

	assert_true(efd >= 0);
	assert_int_equal(evloop_timer_add(l, &t, on_timer, &c), 0);
	assert_int_equal(evloop_add(l, efd, EPOLLIN, on_efd, &f), 0);
	assert_int_equal(write(efd, &one, sizeof(one)), sizeof(one));
	assert_int_equal(evloop_run(l), 0);
	assert_int_equal(f.calls, 1);
	assert_int_equal(c.fired, 1);
	evloop_del(l, efd);
	evloop_timer_del(l, &t);
	close(efd);
}

/* The timer table is bounded; deleting frees a slot and a deleted timer never fires. */
static void test_timer_table_bound(void **state)
{
	struct evloop *l = *state;
	struct evloop_timer t[EVLOOP_MAX_TIMERS + 1], stop;
	struct tctx c = { .l = l };
	struct tctx cs = { .l = l, .t = &stop, .stop_after = 1 };

	for (unsigned int i = 0; i < EVLOOP_MAX_TIMERS; i++)
		assert_int_equal(evloop_timer_add(l, &t[i], on_timer, &c), 0);
	assert_int_equal(evloop_timer_add(l, &t[EVLOOP_MAX_TIMERS], on_timer, &c), -ENOSPC);
	evloop_timer_arm(&t[0], 0);
	evloop_timer_del(l, &t[0]);
	assert_int_equal(evloop_timer_add(l, &stop, on_timer, &cs), 0);
	evloop_timer_arm(&stop, 20 * MS);
	assert_int_equal(evloop_run(l), 0);
	assert_int_equal(c.fired, 0);
	assert_int_equal(cs.fired, 1);
	for (unsigned int i = 1; i < EVLOOP_MAX_TIMERS; i++)
		evloop_timer_del(l, &t[i]);
	evloop_timer_del(l, &stop);
	assert_int_equal(l->ntimers, 0);
}

struct idlectx {
	struct evloop *l;
	unsigned int steps, left;
	uint64_t fired_at_step; /* steps done when the eventfd callback ran */
};

static int idle_step(void *ctx)
{
	struct idlectx *c = ctx;
	c->steps++;
	return --c->left != 0;
}

static void on_idle_efd(void *ctx, int fd, uint32_t ev)
{
	struct idlectx *c = ctx;
	uint64_t v;
	(void)ev;
	assert_int_equal(read(fd, &v, sizeof(v)), sizeof(v));
	c->fired_at_step = c->steps;
}

/*
 * An idle step runs once per pass until it says it is done, without blocking the loop: a timer
 * 20 ms away still fires on time after the steps end, fd events are served between steps, and
 * a finished step is never called again.
 */
static void test_idle_steps_until_done(void **state)
{
	struct evloop *l = *state;
	struct evloop_timer t;
	struct tctx c = { .l = l, .t = &t, .stop_after = 1 };
	struct idlectx ic = { .l = l, .left = 5, .fired_at_step = UINT64_MAX };
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	uint64_t one = 1, t0 = mono_ns();

	assert_true(efd >= 0);
	assert_int_equal(evloop_add(l, efd, EPOLLIN, on_idle_efd, &ic), 0);
	assert_int_equal(write(efd, &one, sizeof(one)), sizeof(one));
	assert_int_equal(evloop_timer_add(l, &t, on_timer, &c), 0);
	evloop_timer_arm(&t, 20 * MS);
	evloop_set_idle(l, idle_step, &ic);
	assert_int_equal(evloop_run(l), 0);
	assert_int_equal(ic.steps, 5);
	assert_int_equal(ic.fired_at_step, 0); /* the pending event was served in the first pass */
	assert_null(l->idle);
	assert_int_equal(c.fired, 1);
	assert_true(mono_ns() - t0 >= 20 * MS);
	evloop_del(l, efd);
	evloop_timer_del(l, &t);
	close(efd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_timer_fires_once_at_first_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_cancel_and_rearm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_armed_from_fd_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_table_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_steps_until_done, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
