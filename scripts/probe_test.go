package scripts
import ("testing"; "github.com/dop251/goja")
func TestProbe(t *testing.T){
 vm := goja.New()
 v, err := vm.RunString(`[Object.prototype.toString.call(Date.prototype), Object.prototype.toString.call(Map.prototype), typeof Date.prototype.getTime === 'function' && (function(){try{return Date.prototype.getTime()}catch(e){return String(e)}})(), (function(){try{ Map.prototype.set.call(Map.prototype,1,2); return "mapproto mutable"}catch(e){return String(e)}})(), Array.isArray(Array.prototype), typeof GoError, String(new GoError("x"))].join(" | ")`)
 t.Log(v, err)
 v, err = vm.RunString(`[typeof Object.getPrototypeOf(/a/[Symbol.matchAll]("")), (function(){"use strict"; return typeof Object.getOwnPropertyDescriptor(arguments,"callee").get})(), typeof Object.getOwnPropertyDescriptor(Function.prototype,"caller")].join(",")`)
 t.Log(v, err)
 v, err = vm.RunString(`var s = 'a'; Object.freeze(globalThis); zz = 1; typeof zz`)
 t.Log(v, err)
}
