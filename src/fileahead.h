/* Many small files: the next files a program will open are fetched before
 * it opens them (issue 15).
 *
 * predict.c guesses the next files from what the process shows: the file
 * operands of its command line, and the directory listings it read. Each
 * guess goes to fileahead.c, whose threads open the file in a private
 * descriptor table (unshare(CLONE_FILES)), so that no number of the
 * program's table is ever taken, read its first window, note its identity
 * and close it. When the program opens the same file (same device, inode,
 * size, modification and change times), its first reads are served from
 * that buffer; then the engine takes over as for any descriptor. */
#ifndef PF_FILEAHEAD_H
#define PF_FILEAHEAD_H

#include <dirent.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "engine.h"

/* --- called by the hooks (hooks.c, hooks_stdio.c) ------------------------------------ */

/* The program's open (any variant, fopen too) returned fd for path, opened
 * read-only. True when fd adopted a file fetched ahead: the engine should
 * not also start reading it at open. */
bool pf_files_opened(int fd, int dirfd, const char *path);

/* readdir returned name (NULL: end of the directory); closedir
 * (predict_listing.c). */
void pf_files_dir_entry(DIR *dirp, const char *name, unsigned char type);
void pf_files_dir_closing(DIR *dirp);

/* --- called by readpath.c at the top of pf_read_fd ------------------------------------ */

/* True when the read was answered from a file fetched ahead (*result is
 * what read/pread returns, errno set as the kernel would); false: the
 * caller goes on as usual. */
bool pf_files_read(int fd, const struct pf_read_req *req, ssize_t *result);

/* --- between predict.c and fileahead.c ------------------------------------------------ */

/* A guess: source (an id of predict.c) expects its file number index, at
 * the absolute path, to be opened soon. Returns false when no more may be
 * in flight now. Duplicates are ignored. */
bool pf_ahead_want(unsigned source, unsigned index, const char *path);

/* The program opened number index of source: guesses of that source
 * before it are no longer wanted. */
void pf_ahead_passed(unsigned source, unsigned index);

/* True when fetching ahead can work in this process (threads with a
 * private descriptor table started, or not tried yet). */
bool pf_ahead_usable(void);

/* The path of fd, as the kernel names it (/proc/self/fd): what an absolute
 * predicted path is when nothing on the way is a symbolic link. */
bool pf_fd_path(int fd, char *buf, size_t size);

/* True when PREFETCH_FILES is on and the library active. */
bool pf_files_enabled(void);

/* Fork handlers, called by predict.c's, which hold its lock first. */
void pf_ahead_atfork_prepare(void);
void pf_ahead_atfork_parent(void);
void pf_ahead_atfork_child(void);

#endif
