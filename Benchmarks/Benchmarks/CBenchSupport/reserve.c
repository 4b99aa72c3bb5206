#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>

#include "CBenchSupport.h"

int CBenchSupport_reserve_blocks(int fd, int64_t bytes) {
    return fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes) == 0 ? 0 : errno;
}
