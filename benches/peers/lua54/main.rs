//! Lua 5.4 for `koru-jit bench --peers`: the peer protocol on stdin/stdout.

#[path = "../../../src/bench/peers/lua.rs"]
mod lua;

fn main() -> std::io::Result<()> {
    lua::serve_stdio()
}
