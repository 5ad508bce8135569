/* fastcall.h: dist/pilot's launcher answers a client call (`-ping`, `-putmetric`, ...)
 * itself, from the running Pilot's record, without starting Python. See fastcall.c. */
#ifndef PILOT_FASTCALL_H
#define PILOT_FASTCALL_H

/* Answer the call `argv` through the control socket that the running Pilot recorded in
 * its unpacked copy (open at `dirfd`, already checked as the caller's own) and exit
 * with the call's status, printing what Python would print. Returns, having sent
 * nothing, whenever it cannot do exactly that: the caller then runs Python. */
void fast_call(int dirfd, char **argv);

#endif
