//! Derive macros of Orchestra.
//!
//! `#[derive(CustomResource)]` turns the `spec` struct of a user-defined kind into a complete kind:
//! it generates the object type (`metadata`, `spec`, optional `status`) and its implementations of
//! Orchestra's `Resource`, `CustomResource`, `Serialize`, `Deserialize`, `JsonSchema`,
//! `SetDefaults` and `Validate`, so that the kind is decoded, defaulted, validated and stored like a
//! built-in one. Use it through `orchestra_core::CustomResource`; its attributes are documented in
//! `orchestra_core::resource::custom`.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::{DeriveInput, Ident, LitStr, Path, parse_macro_input};

/// Derives a custom kind from its spec struct; see `orchestra_core::resource::custom`.
#[proc_macro_derive(CustomResource, attributes(resource))]
pub fn derive_custom_resource(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

#[derive(Default)]
struct Attributes {
    group: Option<String>,
    version: Option<String>,
    kind: Option<String>,
    plural: Option<String>,
    namespaced: bool,
    status: Option<Path>,
    derives: Vec<Path>,
    defaults: Option<Path>,
    validate: Option<Path>,
    krate: Option<Path>,
}

fn parse_attributes(input: &DeriveInput) -> syn::Result<Attributes> {
    let mut attributes = Attributes::default();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("resource")) {
        attr.parse_nested_meta(|meta| {
            let string = |meta: &syn::meta::ParseNestedMeta<'_>| -> syn::Result<String> {
                Ok(meta.value()?.parse::<LitStr>()?.value())
            };
            let path = |meta: &syn::meta::ParseNestedMeta<'_>| -> syn::Result<Path> {
                meta.value()?.parse::<LitStr>()?.parse::<Path>()
            };
            if meta.path.is_ident("group") {
                attributes.group = Some(string(&meta)?);
            } else if meta.path.is_ident("version") {
                attributes.version = Some(string(&meta)?);
            } else if meta.path.is_ident("kind") {
                attributes.kind = Some(string(&meta)?);
            } else if meta.path.is_ident("plural") {
                attributes.plural = Some(string(&meta)?);
            } else if meta.path.is_ident("namespaced") {
                attributes.namespaced = true;
            } else if meta.path.is_ident("status") {
                attributes.status = Some(path(&meta)?);
            } else if meta.path.is_ident("derive") {
                attributes.derives.push(path(&meta)?);
            } else if meta.path.is_ident("defaults") {
                attributes.defaults = Some(path(&meta)?);
            } else if meta.path.is_ident("validate") {
                attributes.validate = Some(path(&meta)?);
            } else if meta.path.is_ident("crate") {
                attributes.krate = Some(path(&meta)?);
            } else {
                return Err(meta.error(
                    "unknown resource attribute; expected one of group, version, kind, plural, \
                     namespaced, status, derive, defaults, validate, crate",
                ));
            }
            Ok(())
        })?;
    }
    Ok(attributes)
}

fn required(value: Option<String>, name: &str, input: &DeriveInput) -> syn::Result<String> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| {
        syn::Error::new_spanned(
            &input.ident,
            format!("#[derive(CustomResource)] needs #[resource({name} = \"...\")]"),
        )
    })
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    if !matches!(input.data, syn::Data::Struct(_)) {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "#[derive(CustomResource)] goes on the spec struct of a kind",
        ));
    }
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "#[derive(CustomResource)] does not support generic spec types",
        ));
    }
    let attributes = parse_attributes(input)?;
    let group = required(attributes.group.clone(), "group", input)?;
    let version = required(attributes.version.clone(), "version", input)?;
    let kind = required(attributes.kind.clone(), "kind", input)?;
    let kind_ident = syn::parse_str::<Ident>(&kind).map_err(|_| {
        syn::Error::new_spanned(
            &input.ident,
            format!("kind {kind:?} is not a Rust identifier"),
        )
    })?;
    let krate: Path = attributes
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::orchestra_core));
    let api_version = format!("{group}/{version}");
    let schema_name = format!("{group}.{version}.{kind}");
    let spec = &input.ident;
    let vis = &input.vis;
    let namespaced = attributes.namespaced;
    let plural = match &attributes.plural {
        Some(plural) => quote!(::std::borrow::Cow::Borrowed(#plural)),
        None => quote!(::std::borrow::Cow::Owned(#krate::resource::default_plural(#kind))),
    };
    let derives = &attributes.derives;
    let meta_type = quote!(#krate::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta);
    let custom = quote!(#krate::resource::custom);
    let serde = quote!(#krate::__private::serde);
    let schemars = quote!(#krate::__private::schemars);
    let doc = format!(
        "The `{kind}` kind (`{api_version}`), generated by `#[derive(CustomResource)]` on [`{spec}`]."
    );

    let (status_field, status_type, has_status, from_parts, status_accessor, new_status) =
        match &attributes.status {
            Some(status) => (
                quote! {
                    /// The observed state, written by the controllers.
                    pub status: ::core::option::Option<#status>,
                },
                quote!(#status),
                true,
                quote!(#kind_ident { metadata, spec, status }),
                quote!(self.status.as_ref()),
                quote!(status: ::core::option::Option::None,),
            ),
            None => (
                quote!(),
                quote!(#custom::NoStatus),
                false,
                quote! {{
                    let _ = status;
                    #kind_ident { metadata, spec }
                }},
                quote!(::core::option::Option::None),
                quote!(),
            ),
        };
    let defaults = match &attributes.defaults {
        Some(function) => quote!(#function(self);),
        None => quote!(),
    };
    let validate = match &attributes.validate {
        Some(function) => quote!(errors.extend(#function(self));),
        None => quote!(),
    };

    Ok(quote! {
        #[doc = #doc]
        #[derive(Clone, Debug, #(#derives),*)]
        #vis struct #kind_ident {
            /// Standard object metadata: name, namespace, labels, annotations, owners.
            pub metadata: #meta_type,
            /// The desired state.
            pub spec: #spec,
            #status_field
        }

        impl #kind_ident {
            /// A new object named `name`, with `spec`.
            pub fn new(name: &str, spec: #spec) -> Self {
                #kind_ident {
                    metadata: #meta_type {
                        name: ::core::option::Option::Some(::std::string::ToString::to_string(name)),
                        ..::core::default::Default::default()
                    },
                    spec,
                    #new_status
                }
            }
        }

        impl #krate::resource::Resource for #kind_ident {
            type DynamicType = ();

            fn kind(_: &()) -> ::std::borrow::Cow<'_, str> {
                ::std::borrow::Cow::Borrowed(#kind)
            }

            fn group(_: &()) -> ::std::borrow::Cow<'_, str> {
                ::std::borrow::Cow::Borrowed(#group)
            }

            fn version(_: &()) -> ::std::borrow::Cow<'_, str> {
                ::std::borrow::Cow::Borrowed(#version)
            }

            fn api_version(_: &()) -> ::std::borrow::Cow<'_, str> {
                ::std::borrow::Cow::Borrowed(#api_version)
            }

            fn plural(_: &()) -> ::std::borrow::Cow<'_, str> {
                #plural
            }

            fn namespaced(_: &()) -> bool {
                #namespaced
            }

            fn meta(&self) -> &#meta_type {
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut #meta_type {
                &mut self.metadata
            }
        }

        impl #custom::CustomResource for #kind_ident {
            type Spec = #spec;
            type Status = #status_type;
            const HAS_STATUS: bool = #has_status;

            fn from_parts(
                metadata: #meta_type,
                spec: #spec,
                status: ::core::option::Option<#status_type>,
            ) -> Self {
                #from_parts
            }

            fn spec(&self) -> &#spec {
                &self.spec
            }

            fn status(&self) -> ::core::option::Option<&#status_type> {
                #status_accessor
            }
        }

        impl #serde::Serialize for #kind_ident {
            fn serialize<S: #serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::core::result::Result<S::Ok, S::Error> {
                #custom::serialize(self, serializer)
            }
        }

        impl<'de> #serde::Deserialize<'de> for #kind_ident {
            fn deserialize<D: #serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::core::result::Result<Self, D::Error> {
                #custom::deserialize(deserializer)
            }
        }

        impl #schemars::JsonSchema for #kind_ident {
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                ::std::borrow::Cow::Borrowed(#schema_name)
            }

            fn json_schema(generator: &mut #schemars::SchemaGenerator) -> #schemars::Schema {
                #custom::json_schema::<Self>(generator)
            }
        }

        impl #krate::defaulting::SetDefaults for #kind_ident {
            fn set_defaults(&mut self) {
                #defaults
            }
        }

        impl #krate::selector::FieldSource for #kind_ident {
            fn supported_fields() -> &'static [&'static str] {
                if #namespaced {
                    &["metadata.name", "metadata.namespace"]
                } else {
                    &["metadata.name"]
                }
            }

            fn field(&self, name: &str) -> ::core::option::Option<::std::borrow::Cow<'_, str>> {
                let value = match name {
                    "metadata.name" => self.metadata.name.as_deref(),
                    "metadata.namespace" if #namespaced => self.metadata.namespace.as_deref(),
                    _ => return ::core::option::Option::None,
                };
                ::core::option::Option::Some(::std::borrow::Cow::Borrowed(value.unwrap_or_default()))
            }
        }

        impl #krate::validation::Validate for #kind_ident {
            fn validate(&self) -> #krate::validation::field::ErrorList {
                #[allow(unused_mut)]
                let mut errors = #custom::validate_metadata(self);
                #validate
                errors
            }
        }
    })
}
