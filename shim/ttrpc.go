package shim

import (
	"context"
	"fmt"
	"reflect"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/ttrpc"
)

// taskV2Service is the ttrpc name under which containerd 1.6 and 1.7 call a
// shim. Its messages are those of task.v3 byte for byte (the two shim.proto
// files differ only in their package line), so the one implementation serves
// both names.
const taskV2Service = "containerd.task.v2.Task"

// registerTaskService registers svc as containerd.task.v3.Task and as
// containerd.task.v2.Task.
func registerTaskService(srv *ttrpc.Server, svc taskAPI.TTRPCTaskService) error {
	taskAPI.RegisterTTRPCTaskService(srv, svc)
	desc, err := serviceDesc(svc)
	if err != nil {
		return err
	}
	srv.RegisterService(taskV2Service, desc)
	return nil
}

var (
	ctxType = reflect.TypeFor[context.Context]()
	errType = reflect.TypeFor[error]()
)

// serviceDesc builds the ttrpc methods of every method of the task service
// interface, the same ones taskAPI.RegisterTTRPCTaskService builds by hand.
func serviceDesc(svc taskAPI.TTRPCTaskService) (*ttrpc.ServiceDesc, error) {
	iface := reflect.TypeFor[taskAPI.TTRPCTaskService]()
	v := reflect.ValueOf(svc)
	methods := make(map[string]ttrpc.Method, iface.NumMethod())
	for i := range iface.NumMethod() {
		m := iface.Method(i)
		t := m.Type
		if t.NumIn() != 2 || t.In(0) != ctxType || t.In(1).Kind() != reflect.Pointer || t.NumOut() != 2 || t.Out(1) != errType {
			return nil, fmt.Errorf("task service method %s has an unexpected signature %s", m.Name, t)
		}
		fn, reqType := v.MethodByName(m.Name), t.In(1).Elem()
		methods[m.Name] = func(ctx context.Context, unmarshal func(any) error) (any, error) {
			req := reflect.New(reqType)
			if err := unmarshal(req.Interface()); err != nil {
				return nil, err
			}
			out := fn.Call([]reflect.Value{reflect.ValueOf(ctx), req})
			err, _ := out[1].Interface().(error)
			return out[0].Interface(), err
		}
	}
	return &ttrpc.ServiceDesc{Methods: methods}, nil
}
