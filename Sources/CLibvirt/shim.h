#pragma once
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdlib.h>
#include <sys/prctl.h>

/* pthread_setname_np needs _GNU_SOURCE, which Swift's Glibc module lacks. */
static inline void vshim_set_thread_name(const char *name) { prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0); }

/* Silences libvirt's default error printer (it writes every error to stderr). */
static void vshim_quiet_error(void *userdata, virErrorPtr error) { (void)userdata; (void)error; }
static inline void vshim_install_quiet_error_handler(void) { virSetErrorFunc(NULL, vshim_quiet_error); }
