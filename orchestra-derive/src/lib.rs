//! Derive macros of Orchestra: `#[derive(CustomResource)]`, being written.
use proc_macro::TokenStream;

/// Being written.
#[proc_macro_derive(CustomResource, attributes(resource))]
pub fn derive_custom_resource(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
