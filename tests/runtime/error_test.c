/* sq_strerror: Squirrel's own words for its codes, the C library's for any
 * other errno value, "unknown error" for what is not one. */
#include <errno.h>
#include <string.h>

#include "squirrel/error.h"
#include "testlib.h"

TEST(codes_are_described)
{
    CHECK(strcmp(sq_strerror(0), "success") == 0);
    CHECK(strcmp(sq_strerror(-ECANCELED), "operation cancelled") == 0);
    CHECK(strcmp(sq_strerror(-ETIMEDOUT), "deadline expired") == 0);
    CHECK(strcmp(sq_strerror(-EIO), "Input/output error") == 0);
    CHECK(strcmp(sq_strerror(-ENOTSUP), "Operation not supported") == 0);
    CHECK(strcmp(sq_strerror(-1000000), "unknown error") == 0);
    CHECK(strcmp(sq_strerror(5), "unknown error") == 0);
}
