#include "textflag.h"

// func int80Getpid() int32: getpid through the 32-bit system call entry
// (i386 number 20), as an i386 or -m32 program makes it.
TEXT ·int80Getpid(SB),NOSPLIT,$0-4
	MOVL	$20, AX
	INT	$0x80
	MOVL	AX, ret+0(FP)
	RET
