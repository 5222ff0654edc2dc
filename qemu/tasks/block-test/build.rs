//! Links the task with the task layout (found through userlib's search path).
fn main() {
    println!("cargo:rustc-link-arg-bins=-Ttask.ld");
}
