#include "textflag.h"

// func cloneIdle() int64: clone(CLONE_VM|SIGCHLD) a child that blocks every
// signal it can and waits in ppoll for good, in registers alone: it shares
// the parent's memory (no page table is copied) and runs no Go code, so
// it costs the kernel's task and stack only. Returns the child's pid, or
// -errno.
TEXT ·cloneIdle(SB),NOSPLIT,$0-8
	MOVQ	$56, AX                 // SYS_clone
	MOVQ	$0x111, DI              // CLONE_VM | SIGCHLD
	LEAQ	·idleStack+64(SB), SI   // a stack the child never uses
	XORQ	DX, DX
	XORQ	R10, R10
	XORQ	R8, R8
	SYSCALL
	CMPQ	AX, $0
	JEQ	child
	MOVQ	AX, ret+0(FP)
	RET
child:
	MOVQ	$14, AX                 // SYS_rt_sigprocmask
	MOVQ	$2, DI                  // SIG_SETMASK
	LEAQ	·idleMask(SB), SI
	XORQ	DX, DX
	MOVQ	$8, R10
	SYSCALL
wait:
	MOVQ	$271, AX                // SYS_ppoll, no fds, no timeout
	XORQ	DI, DI
	XORQ	SI, SI
	XORQ	DX, DX
	XORQ	R10, R10
	XORQ	R8, R8
	SYSCALL
	JMP	wait
