/* stdio streams: glibc refills a FILE through its internal read, which no
 * preload library can intercept. A large fread, though, is read by glibc
 * straight into the caller's memory (_IO_file_xsgetn); this path does that
 * same step through the engine, leaving the stream in the state glibc would
 * have left it in. Everything else (small freads, fgets, getc, getline,
 * ungetc, seeking) stays glibc's own. */
#ifndef PF_STDIO_PATH_H
#define PF_STDIO_PATH_H

#include <stdio.h>

/* fread_unlocked through the engine where it can, else the real one. */
size_t pf_fread_unlocked(void *ptr, size_t size, size_t n, FILE *fp);

/* The descriptor of a plain file stream, or -1 (cookie, memory streams). */
int pf_stream_fd(FILE *fp);

#endif
