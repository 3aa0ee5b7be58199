//go:build chdb

package chlocal

/*
#cgo LDFLAGS: -lchdb
#include <stdlib.h>

// Declared here rather than taken from chdb.h: the npm package ships only the
// shared library, and this one entry point is all the launcher needs.
typedef struct chdb_result chdb_result;
chdb_result * chdb_query_cmdline(int argc, char ** argv);
const char * chdb_result_error(chdb_result * result);
void chdb_destroy_query_result(chdb_result * result);
*/
import "C"

import (
	"errors"
	"unsafe"
)

// Available reports whether this build links the ClickHouse engine.
const Available = true

// run calls clickhouse-local through libchdb and returns when the query
// passed in args finishes. It blocks the calling OS thread for the whole life
// of the server.
func run(args []string) error {
	argv := make([]*C.char, len(args)+1)
	for i, a := range args {
		argv[i] = C.CString(a)
	}
	defer func() {
		for _, p := range argv[:len(args)] {
			C.free(unsafe.Pointer(p))
		}
	}()
	res := C.chdb_query_cmdline(C.int(len(args)), (**C.char)(unsafe.Pointer(&argv[0])))
	if res == nil {
		return nil
	}
	defer C.chdb_destroy_query_result(res)
	if e := C.chdb_result_error(res); e != nil {
		if msg := C.GoString(e); msg != "" {
			return errors.New(msg)
		}
	}
	return nil
}
