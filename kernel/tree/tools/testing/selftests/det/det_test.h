/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kselftest harness plus the det helpers.  The harness's test wrappers
 * (expanded in every test file) have parameters they do not use, and the
 * suite is built with -Wextra -Werror, so the warning is off for test files.
 */
#ifndef DET_TEST_H
#define DET_TEST_H

#pragma GCC diagnostic ignored "-Wunused-parameter"
/* ASSERT_EQ(DET_S_READY, st.status) compares int with __u32. */
#pragma GCC diagnostic ignored "-Wsign-compare"
#include "kselftest_harness.h"
#include "det_util.h"

/* Tests that need more than the harness's default 30 s under TCG. */
FIXTURE(slow) {};
FIXTURE_SETUP(slow) {}
FIXTURE_TEARDOWN(slow) {}
#define SLOW_TEST(name, seconds) TEST_F_TIMEOUT(slow, name, seconds)

#endif /* DET_TEST_H */
