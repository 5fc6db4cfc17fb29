//! `#[derive(Message)]` for [`shmring`](https://docs.rs/shmring).
//!
//! Use it through `shmring` (`shmring::Message`, feature `derive`, on by
//! default), not directly: the generated code names `::shmring`. The
//! documentation, and the tests of what the derive rejects, live in
//! `shmring::message`.
#![deny(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitInt, LitStr, parse_macro_input};

/// Must equal `shmring::message::MAX_NAME_LEN`.
const MAX_NAME_LEN: usize = 64;

/// Derives `shmring::Message` (and `bytemuck::Zeroable` + `bytemuck::Pod`)
/// for a `#[repr(C)]` or `#[repr(transparent)]` struct without padding whose
/// fields are all `Pod`. The struct must also derive `Clone` and `Copy`.
///
/// ```text
/// #[derive(Clone, Copy, shmring::Message)]
/// #[repr(C)]
/// #[message(name = "quote/v1")]
/// struct Quote { bid: f64, ask: f64, size: u32, venue: u32 }
/// ```
///
/// The name is 1..=64 bytes of printable ASCII without spaces
/// (`0x21..=0x7e`). See `shmring::message` for how the name becomes the id
/// recorded in a ring's header.
#[proc_macro_derive(Message, attributes(message))]
pub fn derive_message(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let ident = &input.ident;
    let data = match &input.data {
        Data::Struct(data) => data,
        Data::Enum(data) => {
            return Err(syn::Error::new(
                data.enum_token.span(),
                "#[derive(Message)] supports only structs: an enum has invalid bit patterns \
                 (a peer could write a discriminant that names no variant), so it is not Pod; \
                 send the discriminant as an integer field of a #[repr(C)] struct instead",
            ));
        }
        Data::Union(data) => {
            return Err(syn::Error::new(
                data.union_token.span(),
                "#[derive(Message)] supports only structs, not unions; if every field of the \
                 union is Pod and they are all the same size, implement bytemuck::Pod by hand and \
                 then `impl shmring::Message for ... { const NAME: &'static str = \"...\"; }`",
            ));
        }
    };
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "#[derive(Message)] does not support generic parameters: a message name names one \
             concrete layout; define one struct per layout (e.g. \"quote/v1\")",
        ));
    }
    check_repr(input)?;
    let name = message_name(input)?;

    let field_types: Vec<&syn::Type> = match &data.fields {
        Fields::Named(fields) => fields.named.iter().map(|f| &f.ty).collect(),
        Fields::Unnamed(fields) => fields.unnamed.iter().map(|f| &f.ty).collect(),
        Fields::Unit => Vec::new(),
    };
    if field_types.is_empty() {
        return Err(syn::Error::new_spanned(
            ident,
            format!("`{ident}` has no fields: a message must carry at least one byte"),
        ));
    }

    let bytemuck = quote!(::shmring::__private::bytemuck);
    let field_checks = field_types.iter().map(|ty| {
        quote_spanned! {ty.span()=>
            __shmring_field_must_be_pod::<#ty>();
        }
    });
    let padding_message = format!(
        "`{ident}` has padding (its size is larger than the sum of its fields' sizes): \
         padding bytes are uninitialized, so it cannot be Pod; reorder the fields from \
         largest to smallest alignment, or add explicit `_pad: [u8; N]` fields"
    );
    let empty_message = format!("`{ident}` is zero-sized: a message must carry at least one byte");

    Ok(quote! {
        const _: () = {
            const fn __shmring_field_must_be_pod<T: #bytemuck::Pod>() {}
            #(#field_checks)*
            ::core::assert!(
                ::core::mem::size_of::<#ident>()
                    == 0 #(+ ::core::mem::size_of::<#field_types>())*,
                #padding_message
            );
            ::core::assert!(::core::mem::size_of::<#ident>() > 0, #empty_message);
        };

        // SAFETY: `#ident` is a non-generic struct with `#[repr(C)]` or
        // `#[repr(transparent)]` (checked by the derive), every field is
        // `Pod` (checked above), and so `Zeroable`: all-zero bytes are a
        // valid value of every field, hence of the struct.
        #[automatically_derived]
        unsafe impl #bytemuck::Zeroable for #ident {}

        // SAFETY: as above, plus: no padding (size equals the sum of the
        // field sizes, asserted above), so every byte is initialized and any
        // bit pattern is valid; `Copy + 'static` are required by `Pod`'s
        // supertraits and checked by the compiler.
        #[automatically_derived]
        unsafe impl #bytemuck::Pod for #ident {}

        #[automatically_derived]
        impl ::shmring::Message for #ident {
            const NAME: &'static str = #name;
        }
    })
}

/// Requires `#[repr(C)]` or `#[repr(transparent)]` (optionally with
/// `align(N)`, whose trailing padding the size check catches); rejects
/// `packed` and a missing repr.
fn check_repr(input: &DeriveInput) -> syn::Result<()> {
    let mut stable = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("repr")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("C") || meta.path.is_ident("transparent") {
                stable = true;
                Ok(())
            } else if meta.path.is_ident("align") {
                let content;
                syn::parenthesized!(content in meta.input);
                content.parse::<LitInt>()?;
                Ok(())
            } else if meta.path.is_ident("packed") {
                Err(meta.error(
                    "#[derive(Message)] does not support #[repr(packed)]: references to \
                     unaligned fields are unsound and other languages lay packed structs out \
                     differently; use #[repr(C)] and order the fields so there is no padding",
                ))
            } else {
                Err(meta.error(
                    "#[derive(Message)] needs #[repr(C)] or #[repr(transparent)]: the layout \
                     must be fixed so that another process (or language) agrees on it",
                ))
            }
        })?;
    }
    if stable {
        Ok(())
    } else {
        Err(syn::Error::new_spanned(
            &input.ident,
            format!(
                "#[derive(Message)] needs #[repr(C)] or #[repr(transparent)] on `{}`: the \
                 default Rust layout may reorder fields and differ between compilations",
                input.ident
            ),
        ))
    }
}

/// The `name = "..."` of the required `#[message(...)]` attribute, validated.
fn message_name(input: &DeriveInput) -> syn::Result<LitStr> {
    let mut name: Option<LitStr> = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("message")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                if name.is_some() {
                    return Err(syn::Error::new_spanned(
                        &lit,
                        "duplicate `name` in #[message(...)]",
                    ));
                }
                if let Err(why) = check_name(&lit.value()) {
                    return Err(syn::Error::new_spanned(&lit, why));
                }
                name = Some(lit);
                Ok(())
            } else {
                Err(meta.error("unknown key in #[message(...)]: the only key is `name = \"...\"`"))
            }
        })?;
    }
    name.ok_or_else(|| {
        syn::Error::new(
            input.ident.span(),
            format!(
                "#[derive(Message)] needs a name: add #[message(name = \"...\")] to `{}`, e.g. \
                 #[message(name = \"{}/v1\")]; the name, not the Rust path, identifies the \
                 layout to other processes, so change it (\"/v2\") whenever the layout changes",
                input.ident,
                input.ident.to_string().to_lowercase()
            ),
        )
    })
}

/// The rule of `shmring::message::validate_name`, with the same messages.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a message name must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "a message name is at most {MAX_NAME_LEN} bytes; this one is {}",
            name.len()
        ));
    }
    if let Some((index, byte)) = name
        .bytes()
        .enumerate()
        .find(|&(_, b)| !(0x21..=0x7e).contains(&b))
    {
        return Err(format!(
            "byte {index} of the message name is {byte:#04x}: a message name is printable \
             ASCII without spaces (0x21..=0x7e), e.g. \"quote/v1\""
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names() {
        assert!(check_name("quote/v1").is_ok());
        assert!(check_name(&"x".repeat(64)).is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name("quote v1").is_err());
        assert!(check_name("quöte").is_err());
        assert!(check_name("a\tb").is_err());
    }
}
